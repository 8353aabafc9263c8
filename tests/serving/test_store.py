"""The serving directory: chains, checksums, retention, and kill -9 of a publisher."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.serving.publisher_steps import (
    apply_step,
    dense_for,
    is_full,
    new_tables,
    reference_state,
    run,
    table_contents,
)
from tiktok_pipelines.serving.store import (
    WRITER_LOCK,
    ServingPublisher,
    list_versions,
    load_latest,
    read_version_manifest,
    version_dir,
)

REPO = Path(__file__).resolve().parents[2]


def assert_state_is(state, k: int) -> None:
    expected_tables, expected_dense = reference_state(k)
    assert state.seq == k
    assert {s: table_contents(t) for s, t in state.tables.items()} == expected_tables
    assert state.dense.keys() == expected_dense.keys()
    for name, arr in expected_dense.items():
        np.testing.assert_array_equal(state.dense[name], arr)


def test_every_published_seq_reads_back_exactly(tmp_path: Path) -> None:
    root = tmp_path / "serving"
    publisher = ServingPublisher(root, keep_full=10)
    tables = new_tables()
    for k in range(1, 11):
        apply_step(tables, k)
        m = publisher.publish(tables, now_s=k, dense=dense_for(k), full=is_full(k))
        assert m["kind"] == ("full" if is_full(k) else "delta")
        assert_state_is(load_latest(root), k)
    # deltas carry only touched rows: far fewer than the table
    delta = read_version_manifest(root, 10)
    assert delta["kind"] == "delta" and delta["base_seq"] == 9 and delta["full_seq"] == 9
    assert load_latest(root, after=10) is None


def test_retention_keeps_the_last_k_full_versions_and_their_deltas(tmp_path: Path) -> None:
    root = tmp_path / "serving"
    run(str(root), 14)  # fulls at 1, 5, 9, 13; keep_full=2
    assert list_versions(root) == list(range(9, 15))
    assert_state_is(load_latest(root), 14)
    # nothing hidden but the writers' lock file: no temp or trash directory left
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == [WRITER_LOCK]


def test_a_corrupted_or_truncated_version_is_refused_and_the_last_good_state_kept(tmp_path: Path) -> None:
    root = tmp_path / "serving"
    run(str(root), 7)  # full 1, deltas 2-4, full 5, deltas 6-7
    rows = version_dir(root, 7) / "tables" / "user_id" / "rows.parquet"
    data = bytearray(rows.read_bytes())
    data[len(data) // 2] ^= 0xFF
    rows.write_bytes(bytes(data))
    state = load_latest(root)
    assert_state_is(state, 6)
    assert any("checksum" in s for s in state.skipped)
    # a broken full version: the reader falls back to the previous full and its deltas
    dense = version_dir(root, 5) / "dense.npz"
    dense.write_bytes(dense.read_bytes()[:-10])
    assert_state_is(load_latest(root), 4)


def test_a_failed_publication_leaves_no_trace_and_the_next_is_full(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "serving"
    publisher = ServingPublisher(root)
    tables = new_tables()
    apply_step(tables, 1)
    publisher.publish(tables, now_s=1, dense=dense_for(1), full=True)
    apply_step(tables, 2)
    from tiktok_pipelines.serving import store

    real_rename = store.rename_noreplace  # the commit's rename (publish.rename_noreplace)

    def failing_rename(src, dst):
        if Path(dst).name.startswith("v"):
            raise OSError("disk full")
        return real_rename(src, dst)

    monkeypatch.setattr(store, "rename_noreplace", failing_rename)
    with pytest.raises(OSError):
        publisher.publish(tables, now_s=2)
    monkeypatch.setattr(store, "rename_noreplace", real_rename)
    assert list_versions(root) == [1] and not [p for p in root.iterdir() if p.name.startswith(".tmp")]
    with pytest.raises(ValueError, match="dense"):
        publisher.publish(tables, now_s=2)  # must be full now, and a full needs the dense arrays
    m = publisher.publish(tables, now_s=2, dense=dense_for(1))
    assert m["kind"] == "full"
    assert {s: table_contents(t) for s, t in load_latest(root).tables.items()} == reference_state(2)[0]


def test_kill_9_at_random_points_never_shows_a_reader_a_state_that_was_not_published(tmp_path: Path) -> None:
    """A publisher process is killed (SIGKILL) at random moments, then restarted from what the
    store holds; after every kill a reader must load exactly the state of the newest complete
    version, and the resumed chain must end in the state of the last step."""
    root = tmp_path / "serving"
    steps = 200
    rng = random.Random(7)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    kills = 0
    for trial in range(15):
        proc = subprocess.Popen([sys.executable, "-m", "tests.serving.publisher_steps", str(root), str(steps)],
                                cwd=REPO, env=env)
        # Wait past the interpreter start (and any numba compile) until versions appear.
        deadline = time.time() + 120
        start_seq = (list_versions(root) or [0])[-1]
        while (list_versions(root) or [0])[-1] == start_seq and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.1))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        state = load_latest(root)
        assert state is not None
        assert_state_is(state, state.seq)
        # a kill never leaves a visible version half-written: the newest one listed is whole
        assert state.seq == list_versions(root)[-1] and not state.skipped
        leftovers = [p.name for p in root.iterdir() if p.name.startswith(".tmp-")]
        print(f"trial {trial}: seq {state.seq}, killed {proc.returncode == -signal.SIGKILL}, tmp {len(leftovers)}")
        if state.seq == steps:
            break
    assert kills >= 10
    # finish the history without interruption and check the end state
    run(str(root), steps)
    assert_state_is(load_latest(root), steps)
