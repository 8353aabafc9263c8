"""The one way this package publishes a file or a directory atomically (DESIGN.md decision 6).

A reader sees the old state or the new one whole, never a part of one; a crash (kill -9, a full
disk) at any point leaves the last good state, and what the crash left behind is removed by the
next publication of the same target. Durability: every file and every directory written is
fsynced before the rename that makes it visible, and the parent directory after it (so the rename
itself survives a power cut); so are the parents this creates.

How to use it::

    from tiktok_pipelines.publish import atomic_write_bytes, atomic_write_json, publish_dir, file_sha256s

    atomic_write_json(root / "champion.json", {"version": 3})    # one file, renamed over the old one

    # A new, immutable directory (FileExistsError if ``target`` exists; the rename never replaces):
    with publish_dir(root / "v0003", manifest=lambda tmp: {"files": file_sha256s(tmp)}) as tmp:
        (tmp / "model.txt").write_text(...)                       # write the files into ``tmp``
    # on leaving the block: every file and folder fsynced, the manifest written last (``manifest``
    # is a callable of the staging folder returning a dict, written as JSON, or bytes),
    # ``tmp`` renamed to ``root / "v0003"``, ``root`` fsynced. An exception in the block removes
    # ``tmp`` and publishes nothing.

    # A directory that is replaced and must never be missing (a "latest" model):
    with publish_dir(root / "model", replace=True) as tmp:
        ...
    # ``root/model`` is a symlink to ``root/.model.v-<token>``; the new version is swapped in by
    # renaming a new symlink over it (atomic), the replaced version is kept until the next
    # publication (a reader that resolved the link just before the swap still reads it whole),
    # older ones are removed. A reader that reads several files of one version resolves the link
    # once first (``Path(target).resolve()``); nobody removes ``target`` with ``rmtree``. A real
    # directory already at ``target`` (one published before it was a link) is exchanged with the
    # link in one step (renameat2 RENAME_EXCHANGE) where the file system can, else moved aside
    # just before the link goes in.

    # A file a library writes itself (a DuckDB database), or a two-phase publisher:
    with staging_file(root / "analytics.duckdb") as tmp:        # an empty, flocked staging file
        build(tmp)                                                # (and tmp.wal, removed on error)
        atomic_replace(tmp, root / "analytics.duckdb")           # fsync, rename over, fsync folder
    finish_dir(tmp, "manifest.json", manifest); rename_noreplace(tmp, target)  # publish_dir's steps

Staging names are ``.<name>.tmp-<token>`` beside the target. While a publisher works it holds an
flock on its staging file or folder; the kernel drops it when the process dies, so the next
publisher removes exactly the leftovers whose owner is gone and never another live publisher's
work. ``on_step`` is called with the name of each step (tests kill the process there).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# For tests: called with each step's name ("staged", "written", "synced", "manifest", "renamed",
# "linked", "swapped", "done"), in the publishing process.
on_step: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if on_step is not None:
        on_step(name)


def fsync_path(path: str | os.PathLike) -> None:
    """fsync a file's data, or a directory's entries (so a rename in it survives a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file under ``root``, then every folder, deepest first, ``root`` last."""
    folders = []
    for d, _, names in os.walk(root):
        folders.append(d)
        for n in names:
            p = os.path.join(d, n)
            if not os.path.islink(p):
                fsync_path(p)
    for d in reversed(folders):
        fsync_path(d)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks: the checksum every manifest here records."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256s(root: Path) -> dict[str, str]:
    """{path relative to ``root``: sha256} of every file under it, sorted: a manifest's ``files``."""
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def makedirs(path: Path) -> None:
    """``mkdir -p`` that fsyncs the parent of each folder it creates (a new folder's name is an
    entry in its parent: without that fsync, a power cut can lose the folder and what is in it)."""
    missing = []
    p = Path(path)
    while not p.is_dir():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            if not d.is_dir():
                raise
        fsync_path(d.parent)


# --- renames -----------------------------------------------------------------------------------
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2
_AT_FDCWD = -100


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """renameat2(2) with ``flags``; False where the C library or the file system lacks it."""
    fn = getattr(_libc(), "renameat2", None)
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(src), None, str(dst))


_libc_handle: Any = None


def _libc() -> Any:
    global _libc_handle
    if _libc_handle is None:
        try:
            _libc_handle = ctypes.CDLL(None, use_errno=True)
        except OSError:
            _libc_handle = False
    return _libc_handle


def rename_noreplace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``; ``FileExistsError`` (errno EEXIST) if ``dst`` exists, decided
    atomically by the kernel (RENAME_NOREPLACE) where it can, else by a check just before."""
    if _renameat2(src, dst, _RENAME_NOREPLACE):
        return
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
    os.rename(src, dst)  # a folder onto a non-empty folder fails here too (ENOTEMPTY)


# --- staging and leftovers ---------------------------------------------------------------------
def _tmp_prefix(target: Path) -> str:
    return f".{target.name}.tmp-"


def _version_prefix(target: Path) -> str:
    return f".{target.name}.v-"


def _try_lock(path: str) -> int | None:
    """An fd holding an exclusive flock on ``path``; None if another process holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None  # gone meanwhile (published, or removed by another cleaner), or a symlink
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def clean_leftovers(target: str | os.PathLike, *, keep: tuple[str, ...] = ()) -> list[str]:
    """Remove what crashed publications of ``target`` left beside it (staging files and folders,
    versions no link names, and what they brought: a swap's link, a database's WAL), skipping
    those of a live publisher and the names in ``keep``. Returns the names removed.

    Every such name is ``.<name>.tmp-<token>[.suffix]`` or ``.<name>.v-<token>``; a publication's
    token is alive while its publisher holds the flock on its staging or version entry."""
    target = Path(target)
    parent = target.parent
    tmp_prefix, version_prefix = _tmp_prefix(target), _version_prefix(target)
    by_token: dict[str, list[str]] = {}
    try:
        for e in os.scandir(parent):
            for prefix in (tmp_prefix, version_prefix):
                if e.name.startswith(prefix):
                    by_token.setdefault(e.name[len(prefix):].split(".", 1)[0], []).append(e.name)
    except FileNotFoundError:
        return []
    protected = {_link_name(target), *keep}
    removed = []
    for token, names in by_token.items():
        if protected.intersection(names):
            continue
        owners = [n for n in names if n in (tmp_prefix + token, version_prefix + token)]
        fds = [_try_lock(os.path.join(parent, n)) for n in owners]
        try:
            if None in fds:
                continue  # its publisher is alive
            for name in names:
                path = os.path.join(parent, name)
                if name.startswith(version_prefix) and not os.path.islink(path):
                    # Out of the namespace in one step first: a reader that resolved the link to
                    # this version then finds it gone, never half-deleted.
                    trash = os.path.join(parent, f"{tmp_prefix}{uuid.uuid4().hex}.trash")
                    os.rename(path, trash)
                    path = trash
                _remove(path)
                removed.append(name)
        finally:
            for fd in fds:
                if fd is not None:
                    os.close(fd)
    if removed:
        fsync_path(parent)
    return removed


def _link_name(target: Path) -> str | None:
    try:
        return os.path.basename(os.readlink(target))
    except OSError:
        return None


def _new_staging(target: Path, *, folder: bool) -> tuple[Path, int]:
    """A new staging folder or empty file beside ``target`` and an fd holding its flock."""
    while True:
        tmp = target.parent / f"{_tmp_prefix(target)}{uuid.uuid4().hex}"
        if folder:
            tmp.mkdir()
            fd = os.open(tmp, os.O_RDONLY)
        else:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A cleaner may have taken it between its creation and the flock (and removed it): then
        # the name no longer leads to the inode locked here, and a new one is made.
        try:
            st, own = os.stat(tmp), os.fstat(fd)
            if (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino):
                return tmp, fd
        except FileNotFoundError:
            pass
        os.close(fd)


# --- single files ------------------------------------------------------------------------------
@contextmanager
def staging_file(target: str | os.PathLike) -> Iterator[Path]:
    """A fresh, empty staging file beside ``target``, flocked by this process for the block (so no
    other publisher takes it for a leftover); removed, with any ``<staging>.*`` a library made
    beside it (a database's WAL), if the block raises. The block moves it into place itself
    (``atomic_replace``)."""
    target = Path(target)
    makedirs(target.parent)
    clean_leftovers(target)
    tmp, fd = _new_staging(target, folder=False)
    try:
        yield tmp
    except BaseException:
        for p in (tmp, *tmp.parent.glob(tmp.name + ".*")):
            p.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def atomic_write_bytes(target: str | os.PathLike, data: bytes | list[bytes], *, durable: bool = True) -> None:
    """Write ``data`` (bytes, or a list of pieces) to ``target``: a staging file beside it,
    fsynced, renamed over it, the folder fsynced. A failed write leaves no staging file behind.

    ``durable=False`` skips both fsyncs: still all or nothing for a reader, but a power cut may
    lose the file. For output that is cheap to make again and written by the thousand (the
    simulator's landing files: the fsyncs made it 3x slower)."""
    target = Path(target)
    with staging_file(target) as tmp:
        with open(tmp, "wb") as f:
            if isinstance(data, list):
                f.writelines(data)
            else:
                f.write(data)
            _step("written")
            if durable:
                f.flush()
                os.fsync(f.fileno())
        _step("synced")
        os.replace(tmp, target)
        _step("renamed")
        if durable:
            fsync_path(target.parent)
    _step("done")


def atomic_write_json(target: str | os.PathLike, obj: object) -> None:
    atomic_write_bytes(target, json.dumps(obj, indent=1, sort_keys=True).encode())


def atomic_replace(tmp: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move a fully written file ``tmp`` (the caller's own, beside ``target``) over ``target``
    durably: fsync it, rename, fsync the folder."""
    target = Path(target)
    fsync_path(tmp)
    makedirs(target.parent)
    os.replace(tmp, target)
    fsync_path(target.parent)


# --- directories -------------------------------------------------------------------------------
def _manifest_bytes(manifest: dict[str, Any] | bytes) -> bytes:
    if isinstance(manifest, bytes):
        return manifest
    return json.dumps(manifest, indent=1, sort_keys=True).encode()


def write_manifest(folder: Path, name: str, manifest: dict[str, Any] | bytes) -> None:
    """Write a manifest (a dict as JSON, or bytes) into ``folder`` and fsync it and the folder."""
    with open(folder / name, "wb") as f:
        f.write(_manifest_bytes(manifest))
        f.flush()
        os.fsync(f.fileno())
    fsync_path(folder)


@contextmanager
def staging_dir(target: str | os.PathLike) -> Iterator[Path]:
    """A fresh staging folder beside ``target``, flocked by this process for the block (so no
    other publisher takes it for a leftover), removed if the block raises. The caller moves it
    into place itself (``finish_dir``, or its own commit step) before the block ends."""
    target = Path(target)
    makedirs(target.parent)
    clean_leftovers(target)
    tmp, fd = _new_staging(target, folder=True)
    try:
        _step("staged")
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(fd)


def finish_dir(tmp: Path, manifest_name: str | None = None,
               manifest: dict[str, Any] | bytes | None = None) -> None:
    """Make a written staging folder durable: fsync every file and folder, then write the
    manifest last (a folder with its manifest is complete)."""
    fsync_tree(tmp)
    _step("synced")
    if manifest_name is not None and manifest is not None:
        write_manifest(tmp, manifest_name, manifest)
        _step("manifest")


@contextmanager
def publish_dir(target: str | os.PathLike, *, replace: bool = False, manifest_name: str = "manifest.json",
                manifest: Callable[[Path], dict[str, Any] | bytes] | None = None) -> Iterator[Path]:
    """Publish the folder written in the block as ``target`` (see the module docstring).

    ``replace=False``: ``target`` is new and immutable; ``FileExistsError`` if it exists (checked
    first, and again atomically at the rename). ``replace=True``: ``target`` is a link swapped to
    the new version; it is never missing."""
    target = Path(target)
    if not replace and os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, f"{target} exists; published folders are immutable", str(target))
    with staging_dir(target) as tmp:
        yield tmp
        _step("written")
        finish_dir(tmp, manifest_name, manifest(tmp) if manifest is not None else None)
        if replace:
            _swap_in(tmp, target)
        else:
            rename_noreplace(tmp, target)
            _step("renamed")
            fsync_path(target.parent)
    _step("done")


def _swap_in(tmp: Path, target: Path) -> None:
    parent = target.parent
    token = tmp.name[len(_tmp_prefix(target)):]
    version = parent / f"{_version_prefix(target)}{token}"
    previous = _link_name(target)
    os.rename(tmp, version)  # still flocked by us: a cleaner leaves it alone until the swap
    _step("renamed")
    link = parent / f"{_tmp_prefix(target)}{token}.link"
    os.symlink(version.name, link)
    fsync_path(parent)
    _step("linked")
    if os.path.isdir(target) and not os.path.islink(target):
        # A real folder published before: exchange it with the link in one step where the file
        # system can; else move it aside and the link in right after (a moment without it).
        if not _renameat2(link, target, _RENAME_EXCHANGE):
            os.rename(target, link.with_name(link.name + ".old"))
            os.rename(link, target)
            link = link.with_name(link.name + ".old")
        _remove(str(link))
    else:
        os.replace(link, target)  # the commit point: a rename over the old link
    fsync_path(parent)
    _step("swapped")
    clean_leftovers(target, keep=(previous,) if previous else ())
