"""Small file-system primitives the lake relies on (no Dagster import).

Publishing a file or a folder (DESIGN.md decision 6) is ``tiktok_pipelines.publish``'s; its
single-file helpers are re-exported here for the modules that import them from the lake.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tiktok_pipelines.publish import (  # noqa: F401  (re-exported)
    atomic_replace,
    atomic_write_bytes,
    atomic_write_json,
    fsync_path,
    sha256_file,
)


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
