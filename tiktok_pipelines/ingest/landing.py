"""The landing zone: which files are there, what identifies each, and which paths are safe.

Collectors drop complete NDJSON files into ``landing/<stream>/dt=<date>/`` (written to a hidden temp
name, then renamed). A file's identity is (relative path, size, mtime): the same bytes at the same
path are the same file, so a re-delivered or re-requested file is recognised and never ingested twice.

Listing and stat never raise on a name: a name the engine cannot take as it is (an impossible
flush date, a ``..`` or ``.`` component when ``\\`` counts as a separator, bytes that are not UTF-8)
is listed all the same, and ``name_problem`` says why; the engine then quarantines the whole file
with that reason (``engine.py``), so it is recorded, never lost and never retried.
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
        # surrogateescape: a name that is not UTF-8 keeps its own bytes (and a UTF-8 name its key).
        raw = f"{self.rel_path}|{self.size}|{self.mtime_ns}".encode("utf-8", "surrogateescape")
        return hashlib.sha1(raw).hexdigest()[:20]

    @property
    def shown_path(self) -> str:
        """``rel_path`` as the lake records it: valid UTF-8 (bytes that are not become ``\\xNN``)."""
        return shown_path(self.rel_path)


def shown_path(rel_path: str) -> str:
    """A path as text that any Parquet or SQL string can hold: the file system's bytes as UTF-8,
    with each byte that is not UTF-8 written as ``\\xNN``. The same as ``rel_path`` for every
    UTF-8 name."""
    if _decodable(rel_path):
        return rel_path
    return rel_path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _decodable(rel_path: str) -> bool:
    try:
        rel_path.encode("utf-8")
        return True
    except UnicodeEncodeError:  # os.walk hands undecodable bytes over as lone surrogates
        return False


def _name_flush_ms(name: str) -> int | None:
    """The flush time a conforming name gives; None for a name without one or with an impossible
    date (month 13, day 99), which ``name_problem`` reports."""
    m = LANDING_NAME_RE.match(name)
    if m is None:
        return None
    try:
        t = dt.datetime.strptime(m.group("flushed"), "%Y%m%dT%H%M%S").replace(tzinfo=dt.timezone.utc)
        return int(t.timestamp() * 1000)
    except (ValueError, OverflowError):
        return None


def _flushed_at_ms(name: str, mtime_ns: int) -> int:
    """From the name when it has a valid one, else from the mtime. Never raises (the sensor lists
    every tick with this). The engine bounds it by its own clock (``engine.py``)."""
    ms = _name_flush_ms(name)
    return mtime_ns // 1_000_000 if ms is None else ms


def name_problem(landing_root: Path, rel_path: str) -> str | None:
    """Why the engine must quarantine this file whole because of its name; None for a good name.

    - ``undecodable_name``: bytes that are not UTF-8 (the lake cannot record the name as it is);
    - ``unsafe_name``: refused by ``safe_landing_path`` (e.g. a ``..`` component once ``\\`` counts
      as a separator) although, read the POSIX way, the file is inside the zone;
    - ``invalid_flush_time``: a conforming name with an impossible date.
    """
    if not _decodable(rel_path):
        return "undecodable_name"
    try:
        safe_landing_path(landing_root, rel_path)
    except UnsafeLandingPath:
        return "unsafe_name"
    name = PurePosixPath(rel_path).name
    if LANDING_NAME_RE.match(name) and _name_flush_ms(name) is None:
        return "invalid_flush_time"
    return None


def safe_landing_path(landing_root: Path, rel_path: str, *, posix: bool = False) -> Path:
    """Resolve ``rel_path`` inside ``landing_root`` or raise ``UnsafeLandingPath``.

    Refuses absolute paths, ``..`` components and any symlink on the way (a symlink could point
    anywhere on the machine, and the lake would then ingest it as if the platform had sent it).
    By default a ``\\`` counts as a separator too (a path given by hand is refused if it would
    escape on any system). ``posix=True`` resolves the way this file system does, where ``\\`` is
    an ordinary character: for files the listing found, whose bytes are read (and quarantined as
    ``unsafe_name``) even though their name fails the stricter rule.
    """
    if "\x00" in rel_path:  # no file system path holds a NUL: os calls would raise ValueError
        raise UnsafeLandingPath(f"landing path contains a NUL byte: {rel_path!r}")
    p = PurePosixPath(rel_path)
    # p.parts is empty for "." (it raised IndexError here): that case is refused just below.
    if not rel_path or p.is_absolute() or (p.parts and ":" in p.parts[0]) or (
            not posix and rel_path.startswith("\\")):
        raise UnsafeLandingPath(f"landing path must be relative: {rel_path!r}")
    # Check the raw components: PurePosixPath would quietly drop "." and empty ones.
    if any(part in ("..", ".", "") for part in (rel_path if posix else rel_path.replace("\\", "/")).split("/")):
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
    """The landing file at a path given by hand (the ingest job's ``files``, which the sensor fills
    from ``list_landing_files``). Resolved the POSIX way, like the listing: whatever the listing
    gives can be named here, and the engine quarantines a name that fails the stricter rule."""
    path = safe_landing_path(landing_root, rel_path, posix=True)
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
