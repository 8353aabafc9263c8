"""Small file-system primitives the lake and the publishers rely on (no Dagster import).

Every writer here follows one rule (DESIGN.md, decision 6): write a temp file beside the target,
fsync it, rename it over the target, fsync the directory. A reader sees the old file or the new
one, never half of one, and a crash at any point leaves the last good state.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_path(path: Path) -> None:
    """fsync a file's data, or a directory's entries (so a rename in it survives a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks: the checksum every manifest here records."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_replace(tmp: Path, target: Path) -> None:
    """Move a fully written ``tmp`` over ``target`` durably."""
    fsync_path(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)
    fsync_path(target.parent)


def atomic_write_bytes(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write (a full disk) leaves no temp file behind
        raise
    fsync_path(target.parent)


def atomic_write_json(target: Path, obj: object) -> None:
    atomic_write_bytes(target, json.dumps(obj, indent=1, sort_keys=True).encode())


@contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock for the block; the kernel drops it if the process dies,
    so a crashed writer never wedges the next one."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def sql_path(path: Path | str) -> str:
    """A path as a quoted SQL string literal."""
    return "'" + str(path).replace("'", "''") + "'"
