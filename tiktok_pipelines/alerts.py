"""The alert log: one JSON object per line in ``data/alerts/alerts.jsonl`` (no Dagster import).

Writers are concurrent (the failure sensor, and anything else that wants to alert: several daemon
threads or processes on one host). Each record is appended with a single ``write(2)`` on a file
descriptor opened with ``O_APPEND``: the kernel moves the offset to the end and writes the bytes as
one operation, so two processes never overwrite each other and, on a local file system, their lines
do not interleave. A write cut short (a full disk) leaves a torn last line: the next append starts
on a new line, and ``read_alerts`` skips lines that are not whole JSON objects instead of failing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

MAX_LINE_BYTES = 64 * 1024  # one record stays one small write; long error texts are cut first


def _shorten(record: dict, limit: int) -> dict:
    out = dict(record)
    for key in ("error", "step_errors"):
        value = out.get(key)
        if isinstance(value, str) and len(value) > limit:
            out[key] = value[:limit] + " [...]"
        elif isinstance(value, dict):
            out[key] = {k: (v[:limit] + " [...]" if isinstance(v, str) and len(v) > limit else v)
                        for k, v in value.items()}
    return out


def encode_alert(record: dict) -> bytes:
    """The record as one line of JSON (keys sorted, non-JSON values as strings), at most
    ``MAX_LINE_BYTES``: error texts are shortened until it fits."""
    line = json.dumps(record, sort_keys=True, default=str, ensure_ascii=False) + "\n"
    limit = 8192
    while len(line.encode()) > MAX_LINE_BYTES and limit >= 64:
        line = json.dumps(_shorten(record, limit), sort_keys=True, default=str, ensure_ascii=False) + "\n"
        limit //= 2
    return line.encode()


def append_alert(path: Path, record: dict) -> int:
    """Append ``record`` as one line, in one ``write`` on an ``O_APPEND`` descriptor, then fsync.
    Returns the bytes written; raises ``OSError`` when the write was short (a full disk)."""
    data = encode_alert(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            # After a torn line, start a fresh one rather than join it. (Racy by design: seeing
            # another appender's write half done costs an empty line, which readers skip.)
            data = b"\n" + data
        written = os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if written != len(data):
        raise OSError(f"short write to {path}: {written} of {len(data)} bytes")
    return written


def read_alerts(path: Path) -> list[dict]:
    """Every whole record in the log, oldest first; torn or foreign lines are skipped."""
    if not path.exists():
        return []
    out = []
    with open(path, "rb") as f:
        for raw in f:
            try:
                value = json.loads(raw)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
    return out
