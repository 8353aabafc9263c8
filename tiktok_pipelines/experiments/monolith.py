"""Monolith's two offline experiments on our own examples (no Dagster import).

(a) Batch-only vs online training with different sync intervals (Monolith, Table 2). A model is
    trained on the first ``train_days`` days. Then the remaining days are replayed in time order,
    prequentially: each chunk of ``interval`` seconds is scored by the model as last synced, and
    only then trained on, so the model serving chunk i has learned through chunk i-1. The
    batch-only model is never updated. AUC is pooled over every evaluated example, weighted by
    1/sample_rate. One optimism to note: a chunk shorter than the label window trains on labels
    a live system would only have up to ``label_window_s`` later.

(b) Collisionless tables vs the hashing trick at equal memory (Monolith, Fig. 7). The same model
    and data, with each id slot's table swapped for a hashing-trick table. That table gets as many
    rows as the collisionless table's bytes buy at the trick's bare cost per row (embedding plus
    Adagrad state: generous to the trick). Reported: AUC of both on the evaluation days, and the
    share of distinct users and videos whose row is shared with another id.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tiktok_pipelines.embedding.hashing_trick import HashingTrickEmbeddingTable, collision_stats
from tiktok_pipelines.embedding.torch_module import SlotSpec, default_slots
from tiktok_pipelines.training.evaluate import auc, corrected
from tiktok_pipelines.training.features import ID_SLOTS
from tiktok_pipelines.training.torch_ranker import TwoTowerRanker

SYNC_INTERVALS = {"batch_only": None, "daily": 86_400, "hourly": 3_600, "every_15_min": 900}


def split_days(examples: pa.Table, train_days: int) -> tuple[pa.Table, pa.Table, list[str]]:
    days = sorted(set(examples.column("event_date").to_pylist()))
    if len(days) <= train_days:
        raise ValueError(f"need more than {train_days} days of examples, found {len(days)}")
    cut = days[train_days]
    order = pc.sort_indices(examples, [("ts_ms", "ascending")])
    ex = examples.take(order)
    train = ex.filter(pc.less(ex.column("event_date"), pa.scalar(cut)))
    evaluation = ex.filter(pc.greater_equal(ex.column("event_date"), pa.scalar(cut)))
    return train, evaluation, [str(d) for d in days]


def _auc(table: pa.Table, p: np.ndarray, negative_rate: float) -> float:
    y = table.column("engaged").to_numpy().astype(float)
    w = 1.0 / table.column("sample_rate").to_numpy()
    return auc(y, corrected(p, negative_rate), w)


def online_vs_batch(examples: pa.Table, *, train_days: int, negative_rate: float, dim: int = 16,
                    batch_size: int = 1024, intervals: dict[str, int | None] | None = None,
                    seed: int = 0) -> dict:
    train, evaluation, days = split_days(examples, train_days)
    out = online_vs_batch_split(train, evaluation, negative_rate=negative_rate, dim=dim,
                                batch_size=batch_size, intervals=intervals, seed=seed)
    return {"train_days": days[:train_days], "eval_days": days[train_days:], **out}


def online_vs_batch_split(train: pa.Table, evaluation: pa.Table, *, negative_rate: float, dim: int = 16,
                          batch_size: int = 1024, intervals: dict[str, int | None] | None = None,
                          seed: int = 0) -> dict:
    """(a) on a given time split; ``evaluation`` must be in time order."""
    ts_s = evaluation.column("ts_ms").to_numpy() // 1000
    out: dict = {"train_examples": train.num_rows, "eval_examples": evaluation.num_rows, "auc": {}}
    for name, interval in (intervals or SYNC_INTERVALS).items():
        model = TwoTowerRanker(dim=dim, seed=seed)
        model.fit(train, batch_size=batch_size)
        if interval is None:
            p = model.predict(evaluation)
        else:
            chunk = ts_s // interval
            bounds = np.flatnonzero(np.diff(chunk)) + 1
            starts = np.concatenate(([0], bounds))
            ends = np.concatenate((bounds, [len(chunk)]))
            parts = []
            for a, b in zip(starts, ends):
                piece = evaluation.slice(int(a), int(b - a))
                parts.append(model.predict(piece))  # served by the model as last synced
                model.fit(piece, batch_size=batch_size)  # then learned from, before the next sync
            p = np.concatenate(parts)
        out["auc"][name] = _auc(evaluation, p, negative_rate)
    return out


def hashing_slots(collisionless_model: TwoTowerRanker, dim: int) -> tuple[dict[str, SlotSpec], dict[str, int]]:
    """Hashing-trick slots with the same bytes as the trained collisionless tables."""
    base = {k: v for k, v in default_slots(dim=dim).items() if k in ID_SLOTS}
    rows = {}
    for slot, table in collisionless_model.embeddings.tables.items():
        rows[slot] = max(1, table.memory_bytes() // HashingTrickEmbeddingTable.raw_bytes_per_row(dim))
        base[slot] = SlotSpec(base[slot].table, hashing_trick_rows=int(rows[slot]))
    return base, rows


def collisionless_vs_hashing(examples: pa.Table, *, train_days: int, negative_rate: float, dim: int = 16,
                             batch_size: int = 1024, seed: int = 0) -> dict:
    train, evaluation, days = split_days(examples, train_days)
    out = collisionless_vs_hashing_split(train, evaluation, negative_rate=negative_rate, dim=dim,
                                         batch_size=batch_size, seed=seed)
    return {"train_days": days[:train_days], "eval_days": days[train_days:], **out}


def collisionless_vs_hashing_split(train: pa.Table, evaluation: pa.Table, *, negative_rate: float,
                                   dim: int = 16, batch_size: int = 1024, seed: int = 0) -> dict:
    """(b) on a given time split."""
    model = TwoTowerRanker(dim=dim, seed=seed)
    model.fit(train, batch_size=batch_size)
    auc_collisionless = _auc(evaluation, model.predict(evaluation), negative_rate)
    slots, rows = hashing_slots(model, dim)
    hashed = TwoTowerRanker(dim=dim, seed=seed, slots=slots)
    hashed.fit(train, batch_size=batch_size)
    auc_hashing = _auc(evaluation, hashed.predict(evaluation), negative_rate)
    everything = pa.concat_tables([train, evaluation])
    collisions = {slot: collision_stats(everything.column(slot).to_numpy().astype(np.int64), rows[slot])
                  for slot in ("user_id", "video_id")}
    return {
        "auc_collisionless": auc_collisionless, "auc_hashing": auc_hashing,
        "hashing_rows": rows,
        "collisionless_bytes": {s: t.memory_bytes() for s, t in model.embeddings.tables.items()},
        "hashing_collision_rate": {s: c["id_collision_rate"] for s, c in collisions.items()},
    }
