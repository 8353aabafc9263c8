"""The landing zone: which files are there, what identifies each, and which paths are safe.

Collectors drop complete NDJSON files into ``landing/<stream>/dt=<date>/`` (written to a hidden temp
name, then renamed). A file's identity is (relative path, size, mtime): the same bytes at the same
path are the same file, so a re-delivered or re-requested file is recognised and never ingested twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tiktok_pipelines.schemas import LANDING_NAME_RE, STREAMS


class UnsafeLandingPath(ValueError):
    """A path that points outside the landing zone (``..``, absolute, or through a symlink)."""


@dataclass(frozen=True, order=True)
class LandingFile:
    # Field order makes sorting follow arrival: modification time first, then the path.
    mtime_ns: int
    rel_path: str
    stream: str
    size: int
    flushed_at_ms: int
    # When the file became visible here: its ctime. A collector writes a file, then renames it in;
    # the rename keeps the mtime but sets the ctime, so a file written earlier and renamed later
    # still counts as a new arrival. And only the kernel (or the NFS server) sets a ctime, from its
    # own clock: an mtime can be anything (cp -p, rsync -t, touch -d, a writer whose clock runs
    # ahead), and one file with an mtime a day ahead would have pushed the sensor's mark a day
    # past every file after it. Not part of the identity or the sort order.
    arrived_ns: int = field(default=0, compare=False)

    @property
    def key(self) -> str:
        """Stable identity of this delivery of the file."""
        raw = f"{self.rel_path}|{self.size}|{self.mtime_ns}".encode()
        return hashlib.sha1(raw).hexdigest()[:20]


def _flushed_at_ms(name: str, mtime_ns: int) -> int:
    m = LANDING_NAME_RE.match(name)
    if m is None:
        return mtime_ns // 1_000_000
    t = dt.datetime.strptime(m.group("flushed"), "%Y%m%dT%H%M%S").replace(tzinfo=dt.timezone.utc)
    return int(t.timestamp() * 1000)


def safe_landing_path(landing_root: Path, rel_path: str) -> Path:
    """Resolve ``rel_path`` inside ``landing_root`` or raise ``UnsafeLandingPath``.

    Refuses absolute paths, ``..`` components and any symlink on the way (a symlink could point
    anywhere on the machine, and the lake would then ingest it as if the platform had sent it).
    """
    if "\x00" in rel_path:  # no file system path holds a NUL: os calls would raise ValueError
        raise UnsafeLandingPath(f"landing path contains a NUL byte: {rel_path!r}")
    p = PurePosixPath(rel_path)
    # p.parts is empty for "." (it raised IndexError here): that case is refused just below.
    if not rel_path or p.is_absolute() or rel_path.startswith("\\") or (p.parts and ":" in p.parts[0]):
        raise UnsafeLandingPath(f"landing path must be relative: {rel_path!r}")
    # Check the raw components: PurePosixPath would quietly drop "." and empty ones.
    if any(part in ("..", ".", "") for part in rel_path.replace("\\", "/").split("/")):
        raise UnsafeLandingPath(f"landing path may not contain '..' or '.': {rel_path!r}")
    root = landing_root.resolve()
    current = root
    for part in p.parts:
        current = current / part
        if current.is_symlink():
            raise UnsafeLandingPath(f"landing path goes through a symlink: {rel_path!r}")
    resolved = current.resolve()
    if root != resolved and root not in resolved.parents:
        raise UnsafeLandingPath(f"landing path escapes the landing zone: {rel_path!r}")
    return resolved


def stat_landing_file(landing_root: Path, rel_path: str) -> LandingFile:
    path = safe_landing_path(landing_root, rel_path)
    stream = PurePosixPath(rel_path).parts[0]
    if stream not in STREAMS:
        raise UnsafeLandingPath(f"unknown stream directory {stream!r} in {rel_path!r}")
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):  # a directory or a FIFO would fail (or block) the ingest later
        raise UnsafeLandingPath(f"not a regular file: {rel_path!r}")
    return LandingFile(
        mtime_ns=st.st_mtime_ns,
        rel_path=rel_path,
        stream=stream,
        size=st.st_size,
        flushed_at_ms=_flushed_at_ms(path.name, st.st_mtime_ns),
    )


def list_landing_files(landing_root: Path, streams: list[str] | None = None) -> list[LandingFile]:
    """Every complete landing file, oldest first. Hidden (in-flight) files and symlinks are skipped."""
    out: list[LandingFile] = []
    root = Path(landing_root)
    for stream in streams or list(STREAMS):
        base = root / stream
        if not base.is_dir() or base.is_symlink():
            continue
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in filenames:
                if name.startswith(".") or not name.endswith(".ndjson"):
                    continue
                full = Path(dirpath) / name
                if full.is_symlink():
                    continue
                st = full.stat()
                if not stat.S_ISREG(st.st_mode):  # a FIFO or socket named *.ndjson
                    continue
                rel = full.relative_to(root).as_posix()
                out.append(
                    LandingFile(
                        mtime_ns=st.st_mtime_ns,
                        rel_path=rel,
                        stream=stream,
                        size=st.st_size,
                        flushed_at_ms=_flushed_at_ms(name, st.st_mtime_ns),
                        arrived_ns=st.st_ctime_ns,
                    )
                )
    out.sort()
    return out
