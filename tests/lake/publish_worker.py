"""A publisher process for tests/lake/test_publish.py.

    python -m tests.lake.publish_worker MODE TARGET TAG [KILL_AT|wait:STEP]

MODE is ``dir`` (a new immutable folder), ``replace`` (a folder swapped in as ``TARGET``) or
``file`` (one file). Every file written holds TAG, and the folder's manifest lists their sha256s,
so a reader can tell one whole state from a mix. With KILL_AT the process kills itself with
SIGKILL when ``publish.on_step`` reports that step ("half": after half the folder's files); with
``wait:STEP`` it prints ``waiting`` there and goes on when a line arrives on stdin.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from tiktok_pipelines import publish

FILES = ("a.txt", "b.txt", "sub/c.txt", "sub/d.txt")


def content(tag: str, name: str) -> bytes:
    return f"{tag}:{name}\n".encode() * 2000


def main(mode: str, target: str, tag: str, at: str = "") -> None:
    def on_step(step: str) -> None:
        if at.startswith("wait:") and step == at[5:]:
            print("waiting", flush=True)
            sys.stdin.readline()
        elif step == at:
            os.kill(os.getpid(), signal.SIGKILL)

    publish.on_step = on_step
    if mode in ("file", "file-not-durable"):
        publish.atomic_write_bytes(target, content(tag, "file"), durable=mode == "file")
        return
    with publish.publish_dir(target, replace=mode == "replace",
                             manifest=lambda tmp: {"tag": tag, "files": publish.file_sha256s(tmp)}) as tmp:
        for i, name in enumerate(FILES):
            if i == len(FILES) // 2:
                on_step("half")
            (tmp / name).parent.mkdir(exist_ok=True)
            (tmp / name).write_bytes(content(tag, name))


if __name__ == "__main__":
    main(*sys.argv[1:])
