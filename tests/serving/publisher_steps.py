"""A deterministic publishing history, shared by the crash-test worker and the tests.

Step k writes rows whose values depend only on (k, slot, id) and deletes older ids, so the state
after step k is a pure function of k: a test can rebuild the state of any published seq and
compare a reader's result with it exactly.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from tiktok_pipelines.embedding import CollisionlessEmbeddingTable, TableConfig
from tiktok_pipelines.serving.store import ServingPublisher, load_latest

SLOTS = ("user_id", "video_id")
DIM = 4
FULL_EVERY = 4  # steps 1, 5, 9, ... publish full versions
DENSE_EVERY = 3  # and deltas at multiples of 3 carry the dense arrays too


def new_tables() -> dict[str, CollisionlessEmbeddingTable]:
    return {s: CollisionlessEmbeddingTable(TableConfig(dim=DIM), name=s) for s in SLOTS}


def apply_step(tables: dict[str, CollisionlessEmbeddingTable], k: int) -> None:
    for i, slot in enumerate(SLOTS):
        ids = np.arange(k * 7 + i, k * 7 + i + 40, dtype=np.int64)
        emb = np.sin(ids[:, None] * 0.1 + np.arange(DIM) + k + 10 * i).astype(np.float32)
        tables[slot].upsert_rows(ids, emb, now_s=k)
        if k > 3:
            tables[slot].delete(np.arange((k - 3) * 7 + i, (k - 3) * 7 + i + 5, dtype=np.int64))


def is_full(k: int) -> bool:
    return k % FULL_EVERY == 1


def dense_for(k: int) -> dict[str, np.ndarray] | None:
    if is_full(k) or k % DENSE_EVERY == 0:
        return {"w": np.full((3, 3), k, np.float32), "b": np.arange(3, dtype=np.float64) * k}
    return None


def reference_state(k: int) -> tuple[dict[str, dict[int, tuple]], dict[str, np.ndarray]]:
    """{slot: {id: embedding tuple}} and the dense arrays a reader must see at seq k."""
    tables = new_tables()
    dense = None
    for j in range(1, k + 1):
        apply_step(tables, j)
        dense = dense_for(j) or dense
    return {s: table_contents(t) for s, t in tables.items()}, dense


def table_contents(table: CollisionlessEmbeddingTable) -> dict[int, tuple]:
    rows = table.live_rows()
    state = table.row_state(rows)
    return {int(i): tuple(e.tolist()) for i, e in zip(state["id"], state["embedding"])}


def run(root: str, steps: int, pause_s: float = 0.0) -> None:
    """Publish steps after the store's newest version, up to ``steps`` (resumable after kill -9)."""
    publisher = ServingPublisher(root, keep_full=2)
    state = load_latest(root)
    if state is None:
        tables, start = new_tables(), 1
    else:
        # Resume exactly where the store is: rebuild the tables as published, chain deltas on.
        tables, start = state.tables, state.seq + 1
        publisher.resume_from(state.seq)
    for k in range(start, steps + 1):
        apply_step(tables, k)
        publisher.publish(tables, now_s=k, dense=dense_for(k), full=is_full(k))
        if pause_s:
            time.sleep(pause_s)


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
