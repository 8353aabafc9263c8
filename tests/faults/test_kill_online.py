"""kill -9 during online updates: the serving directory stays consistent and no impression is
trained twice or skipped.

A worker process (tests/faults/online_worker.py) does what the sensors do: ingest the next landing
files, run ``online_update``. It is killed with SIGKILL at random moments after it starts an update
(training or publishing), and on alternate trials the instant a publication's temp directory
appears (mid-publish). After every kill a reader must load exactly the newest published version,
unrefused. At the end an undisturbed worker finishes the job, and the versions are audited: seqs
without gaps, each delta chained on the one before, and each version's training window
(trained_through_ms of the previous version, its own] holding exactly the examples it says it
trained on. Windows that tile the timeline with no overlap = nothing trained twice, nothing skipped.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.faults.online_worker import CONFIG
from tests.training.batch_model import day_one_published, streamed
from tiktok_pipelines.serving.store import list_versions, load_latest, verify_version
from tiktok_pipelines.training.joiner import examples_between
from tiktok_pipelines.training.stream_join import committed_watermark_ms

REPO = Path(__file__).resolve().parents[2]

TRIALS = 6


def _reader(proc: subprocess.Popen) -> queue.Queue:
    """The worker's stdout lines, read in a thread so waiting on them can time out."""
    q: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            q.put(line.strip())
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return q


def _wait_for_update(lines: queue.Queue, nth: int, timeout_s: float = 120) -> bool:
    """Wait until the worker has started its ``nth`` update; False if it exited first."""
    seen = 0
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            return False
        if line.startswith("update"):
            seen += 1
            if seen == nth:
                return True
    raise AssertionError("the worker never started an update")


def _temp_dirs(serving: Path) -> set[str]:
    """Half-written publications (a publisher removes them when it starts)."""
    return {p.name for p in serving.iterdir() if p.name.startswith(".tmp-")}


def _assert_consistent(serving: Path) -> int:
    """A reader loads exactly the newest published version, and refuses none."""
    state = load_latest(serving)
    assert state is not None and not state.skipped, state and state.skipped
    assert state.seq == list_versions(serving)[-1]
    return state.seq


@pytest.mark.slow
def test_kill_9_during_online_updates_trains_every_impression_once(tmp_path: Path, lake_root: str) -> None:
    """On local disk and with the lake (the events, the streaming join's state and examples) on
    the S3 server."""
    data = tmp_path / "data"
    # No late deliveries, so the audit at the end can recompute each window's examples from the
    # final lake; the batch model of day 1 is the first full version (as the daily retrain's).
    _, lake, serving, files, first_through = day_one_published(data, CONFIG, seed=5, users=300, videos=600,
                                                               events_per_day=20_000, lake=lake_root)
    # Day 2 arrives in 30-minute slices (two 15-minute flushes), 8 hours of them.
    flushes = sorted({f.flushed_at_ms for f in files if "/dt=2026-11-02/" in f.rel_path})
    ends = [str(t) for t in flushes[1:33:2]]

    rng = random.Random(11)
    env = {**os.environ, "PYTHONPATH": str(REPO), "ONLINE_WORKER_LAKE": str(lake)}
    cmd = [sys.executable, "-m", "tests.faults.online_worker", str(data), *ends]
    kills = {"random": 0, "mid_publish": 0}
    left_mid_publish = 0
    for trial in range(TRIALS):
        temp_before = _temp_dirs(serving)
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        lines = _reader(proc)
        mode = "mid_publish" if trial % 2 else "random"
        if _wait_for_update(lines, nth=rng.randint(1, 2)):
            if mode == "random":
                time.sleep(rng.uniform(0.0, 0.6))
            else:
                deadline = time.time() + 30
                while not _temp_dirs(serving) - temp_before and proc.poll() is None and time.time() < deadline:
                    time.sleep(0.0005)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                kills[mode] += 1
        proc.wait(timeout=120)
        # A new temp dir left behind: this kill interrupted a publication.
        mid_publish = bool(_temp_dirs(serving) - temp_before)
        left_mid_publish += mid_publish
        seq = _assert_consistent(serving)
        print(f"trial {trial} ({mode}): rc {proc.returncode}, newest seq {seq}, killed mid-publish {mid_publish}")
    assert sum(kills.values()) >= TRIALS - 2, kills
    assert left_mid_publish >= 1, "no kill landed inside a publication"

    # The next (undisturbed) run finishes the job.
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    final_seq = _assert_consistent(serving)
    assert not [p for p in serving.iterdir() if p.name.startswith((".tmp-", ".trash-"))]

    # The audit: every version, in order.
    seqs = list_versions(serving)
    assert seqs == list(range(1, final_seq + 1))  # a killed publication never burns a seq
    manifests = {s: verify_version(serving, s) for s in seqs}
    through = {s: manifests[s]["metadata"]["trained_through_ms"] for s in seqs}
    trained = 0
    for s in seqs[1:]:
        m = manifests[s]
        if m["kind"] == "delta":
            assert m["base_seq"] == s - 1 and m["full_seq"] == manifests[s - 1]["full_seq"]
        else:
            assert m["full_seq"] == s
        assert through[s] > through[s - 1]
        window = streamed(lake, through[s - 1], through[s])
        assert m["metadata"]["online_examples"] == window.num_rows > 0, s
        trained += window.num_rows
    # Caught up: everything whose label window the joiner's watermark had closed is trained, and
    # the joiner (killed too) emitted each impression once.
    assert through[final_seq] == committed_watermark_ms(lake) - CONFIG.label_window_s * 1000 - 1
    emitted = streamed(lake, first_through, through[final_seq])
    assert trained == emitted.num_rows == len(set(emitted.column("example_id").to_pylist()))
    # ... and they are the batch join's examples of that window, but for records delivered late
    batch = examples_between(lake, CONFIG, first_through, through[final_seq])
    assert set(emitted.column("example_id").to_pylist()) <= set(batch.column("example_id").to_pylist())
    assert emitted.num_rows >= 0.99 * batch.num_rows
    kinds = [manifests[s]["kind"] for s in seqs[1:]]
    assert "full" in kinds and "delta" in kinds and any(manifests[s]["dense"] for s in seqs[1:] if manifests[s]["kind"] == "delta")
    assert load_latest(serving).metadata["trained_through_ms"] == through[final_seq]
    print(f"kills {kills}, {left_mid_publish} left a publication half-written; {final_seq - 1} online versions, "
          f"{trained} examples trained once each")
