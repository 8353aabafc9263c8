"""kill -9 of the model server in the middle of a hot reload; a new server serves the newest good state.

A real server process (tests/faults/server_worker.py: ModelServer + uvicorn) polls a serving
directory while this test publishes versions into it (deltas, and full versions that trigger
retention). Each version moves one probe user's best video, so the answer tells which state is
served. After a publication, the server is killed with SIGKILL at a random moment in the first
quarter of its reload of the new version (its log says when a reload starts and when it completes,
so the kill is aimed, not left to timing luck on a loaded machine), then a fresh server is started:
it must serve exactly the newest version, over HTTP. A reload only reads, so nothing on disk may
change. Last, a version whose bytes were flipped is refused by a running server and by a new one,
both of which keep serving the last good state.
"""

from __future__ import annotations

import os
import queue
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tiktok_pipelines.embedding import CollisionlessEmbeddingTable, TableConfig
from tiktok_pipelines.lake import sha256_file
from tiktok_pipelines.serving.store import (
    ServingPublisher,
    list_versions,
    load_latest,
    version_dir,
)

REPO = Path(__file__).resolve().parents[2]
DIM = 8
ROWS = 100_000  # big enough that a reload takes a few hundred ms: a window to kill it in
PROBE_USER = 1
ROUNDS = 6


def _target(seq: int) -> int:
    """The video version ``seq`` makes the probe user's best match."""
    return 1000 + seq


def _tables() -> dict[str, CollisionlessEmbeddingTable]:
    rng = np.random.default_rng(0)
    t = {s: CollisionlessEmbeddingTable(TableConfig(dim=DIM, init_scale=0.0), name=s)
         for s in ("user_id", "video_id", "creator_id")}
    for slot in ("user_id", "video_id"):
        t[slot].upsert_rows(np.arange(ROWS), (rng.standard_normal((ROWS, DIM)) * 0.01).astype(np.float32), now_s=0)
    probe = np.zeros((1, DIM), np.float32)
    probe[0, 0] = 1.0
    t["user_id"].upsert_rows(np.array([PROBE_USER]), probe, now_s=0)
    t["creator_id"].upsert_rows(np.arange(10), np.zeros((10, DIM), np.float32), now_s=0)
    return t


def _point_probe_at(tables, seq: int) -> None:
    """Step ``seq``: the previous target goes back to nothing, this one lines up with the probe."""
    vec = np.zeros((2, DIM), np.float32)
    vec[1, 0] = 10.0
    tables["video_id"].upsert_rows(np.array([_target(seq - 1), _target(seq)]), vec, now_s=seq)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process and the seqs its log says it finished loading."""

    def __init__(self, serving: Path) -> None:
        self.port = _free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.faults.server_worker", str(serving), str(self.port)],
                                     cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
        self.loaded: queue.Queue = queue.Queue()
        self.loading: queue.Queue = queue.Queue()
        self.log: list[str] = []
        self._pumper = threading.Thread(target=self._pump, daemon=True)
        self._pumper.start()
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if self.client.get("/healthz").json()["model_loaded"]:
                    return
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None, "\n".join(self.log[-30:])
            time.sleep(0.05)
        raise AssertionError("the server never came up")

    def _pump(self) -> None:
        for line in self.proc.stderr:
            self.log.append(line.rstrip())
            if m := re.search(r"serving seq (\d+)", line):
                self.loaded.put(int(m.group(1)))
            elif m := re.search(r"loading seq (\d+)", line):
                self.loading.put(int(m.group(1)))

    def wait_loading(self, seq: int, timeout: float = 60) -> None:
        """Block until the server has started loading version ``seq``."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if self.loading.get(timeout=0.5) >= seq:
                    return
            except queue.Empty:
                assert self.proc.poll() is None, "\n".join(self.log[-30:])
        raise AssertionError(f"the server never started loading seq {seq}")

    def last_loaded(self) -> int:
        seqs = [0]
        while not self.loaded.empty():
            seqs.append(self.loaded.get())
        self._last = max(seqs + [getattr(self, "_last", 0)])
        return self._last

    def served(self) -> tuple[int, int]:
        """(seq served, the probe user's top video), over HTTP."""
        body = self.client.get("/recommend", params={"user_id": PROBE_USER, "k": 1})
        assert body.status_code == 200, body.text
        return body.json()["model_seq"], body.json()["items"][0]["video_id"]

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._pumper.join(timeout=30)  # every line the server wrote is read: last_loaded() is exact
        self.client.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill()


def _fingerprint(serving: Path) -> dict[str, str]:
    return {p.relative_to(serving).as_posix(): sha256_file(p) for p in sorted(serving.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_kill_9_mid_reload_then_a_new_server_serves_the_newest_good_state(tmp_path: Path) -> None:
    serving = tmp_path / "serving"
    tables = _tables()
    publisher = ServingPublisher(serving, keep_full=2)
    _point_probe_at(tables, 1)
    publisher.publish(tables, now_s=1, dense={"w": np.zeros(1)}, full=True)
    t0 = time.perf_counter()
    load_latest(serving)
    load_s = time.perf_counter() - t0  # a reload takes at least this long in the server

    rng = random.Random(3)
    server = Server(serving)
    mid_reload = 0
    try:
        assert server.served() == (1, _target(1))
        for seq in range(2, ROUNDS + 2):
            _point_probe_at(tables, seq)
            full = seq % 3 == 0  # fulls now and then: retention deletes old versions under the reader
            publisher.publish(tables, now_s=seq, dense={"w": np.zeros(1)} if full else None, full=full)
            server.wait_loading(seq)
            time.sleep(rng.uniform(0.0, load_s / 4))
            server.kill()
            mid_reload += server.last_loaded() < seq
            on_disk = _fingerprint(serving)
            server = Server(serving)
            assert server.served() == (seq, _target(seq)) == (list_versions(serving)[-1], _target(seq))
            assert _fingerprint(serving) == on_disk  # serving only reads
        print(f"{ROUNDS} kills, {mid_reload} before the reload of the new version had finished "
              f"(a reload takes ~{load_s:.2f}s)")
        assert mid_reload >= ROUNDS // 2

        # A version with flipped bytes: the running server refuses it and keeps the last good state...
        good = ROUNDS + 1
        _point_probe_at(tables, good + 1)
        m = publisher.publish(tables, now_s=good + 1)
        rows = version_dir(serving, m["seq"]) / "tables" / "video_id" / "rows.parquet"
        data = bytearray(rows.read_bytes())
        data[len(data) // 2] ^= 0xFF
        rows.write_bytes(bytes(data))
        time.sleep(max(0.5, 2 * load_s))
        assert server.served() == (good, _target(good))
        assert server.client.get("/healthz").json()["seq"] == good
        # ... and so does a server started after it.
        server.kill()
        server = Server(serving)
        assert server.served() == (good, _target(good))
    finally:
        server.stop()
