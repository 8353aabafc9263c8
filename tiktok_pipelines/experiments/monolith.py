"""Monolith's offline experiments, with baselines, on any time split (no Dagster import).

Every arm sees the same split: ``train`` (everything before the cut) and ``evaluation`` (the
rest, in time order). DESIGN.md decision 10 is built in:

- **Baselines** beside the models: ``popularity`` (the item's smoothed positive rate in the
  training data) and ``mf`` (logistic matrix factorisation with biases, early-stopped on a
  time-later validation slice). They are trained on exactly what the batch model is trained on.
- **No label before it exists.** An example's label is known ``label_window_s`` after its
  impression (the joiner's window; 0 for ratings, which are their own label). The batch arms
  train only on examples labelled before the cut; the rest of the training window waits for the
  online arms' first sync after its label closes.
- **(a) Sync intervals, evaluated progressively.** From the batch model, the evaluation period is
  replayed in chunks of ``interval`` seconds: at each chunk's start the model trains (one pass,
  in time order: the online step) on every example whose label closed by then and that it has
  not trained on, then scores the chunk. So each chunk is scored before the model learns from it.
- **(b) Collisionless tables vs the hashing trick** with the same model and data: at equal
  parameter count (the trick gets as many rows per slot as the collisionless table holds ids)
  and, for reference, at equal memory (as many rows as the collisionless table's bytes buy at
  the trick's bare cost per row). Collision rates are the share of distinct ids whose row
  another id also uses.
- **Seeds.** Every figure is computed for each seed; the result carries the per-seed values,
  the mean and the standard deviation. AUC is pooled over every evaluated example, weighted by
  1 / sample_rate (the full distribution); ECE is of the log-odds-corrected probability.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from tiktok_pipelines.embedding.hashing_trick import HashingTrickEmbeddingTable, collision_stats
from tiktok_pipelines.embedding.torch_module import SlotSpec
from tiktok_pipelines.training.baselines import BiasedMF, PopularityBaseline
from tiktok_pipelines.training.evaluate import auc, calibration, corrected
from tiktok_pipelines.training.features import CATEGORICAL_FEATURES, NUMERIC_NAMES
from tiktok_pipelines.training.lgbm import LGBMRanker
from tiktok_pipelines.training.torch_ranker import MonolithRanker, ranker_slots

SYNC_INTERVALS = {"daily": 86_400, "hourly": 3_600, "every_15_min": 900}
DEFAULT_SEEDS = (0, 1, 2)
AUC_KEYS = ("auc_popularity", "auc_mf", "auc_batch", "auc_online", "auc_collisionless", "auc_hashing",
            "auc_hashing_equal_memory")


@dataclass(frozen=True)
class ExperimentConfig:
    negative_rate: float = 1.0  # the rate the training examples' negatives were kept at
    label_window_s: int = 0
    dim: int = 16
    batch_size: int = 512
    intervals: tuple[tuple[str, int], ...] = tuple(SYNC_INTERVALS.items())
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    lgbm_rounds: int = 100  # as the daily retrain's (TrainingPolicy.lgbm_rounds)


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


def _y_w(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    return (table.column("engaged").to_numpy().astype(float),
            1.0 / table.column("sample_rate").to_numpy().astype(float))


def labelled_before(train: pa.Table, cut_ms: int, label_window_s: int) -> tuple[pa.Table, pa.Table]:
    """(examples whose label existed before ``cut_ms``, the rest) of a time-ordered table."""
    ts = train.column("ts_ms").to_numpy()
    k = int(np.searchsorted(ts + label_window_s * 1000, cut_ms, side="left"))
    return train.slice(0, k), train.slice(k)


def progressive(model: MonolithRanker, waiting: pa.Table, evaluation: pa.Table, *, interval_s: int,
                label_window_s: int, batch_size: int) -> np.ndarray:
    """Scores of ``evaluation`` (time order) by a model synced every ``interval_s``: at each
    chunk's start it first trains on every example whose label has closed by then (from
    ``waiting``, then from the evaluation stream itself), then scores the chunk."""
    stream = pa.concat_tables([waiting, evaluation]) if waiting.num_rows else evaluation
    ready_ms = stream.column("ts_ms").to_numpy() + label_window_s * 1000
    ts_s = evaluation.column("ts_ms").to_numpy() // 1000
    chunk = ts_s // interval_s
    starts = np.concatenate(([0], np.flatnonzero(np.diff(chunk)) + 1)).astype(int)
    ends = np.concatenate((starts[1:], [len(chunk)])).astype(int)
    trained, parts = 0, []
    for a, b in zip(starts, ends):
        sync_ms = int(chunk[a]) * interval_s * 1000
        # strictly before the sync: with label_window_s = 0, an example at the chunk's very
        # first millisecond belongs to the chunk and is scored before it is learnt from
        ready = int(np.searchsorted(ready_ms, sync_ms, side="left"))
        if ready > trained:
            model.partial_fit(stream.slice(trained, ready - trained), batch_size=batch_size)
            trained = ready
        parts.append(model.predict(evaluation.slice(int(a), int(b - a))))
    return np.concatenate(parts) if parts else np.zeros(0)


def has_lgbm_features(table: pa.Table) -> bool:
    return set(NUMERIC_NAMES + CATEGORICAL_FEATURES) <= set(table.column_names)


def hashing_slots(model: MonolithRanker, dim: int, *, equal: str) -> tuple[dict[str, SlotSpec], dict[str, int]]:
    """Hashing-trick slots for the trained collisionless ``model``: ``equal="parameters"`` gives
    each slot as many rows as its table holds ids, ``equal="memory"`` as many as its bytes buy."""
    base = ranker_slots(dim)
    rows = {}
    for slot, table in model.embeddings.tables.items():
        if equal == "parameters":
            rows[slot] = max(1, len(table))
        else:
            rows[slot] = max(1, table.memory_bytes() // HashingTrickEmbeddingTable.raw_bytes_per_row(table.dim))
        base[slot] = SlotSpec(base[slot].table, hashing_trick_rows=int(rows[slot]))
    return base, rows


def _one_seed(train: pa.Table, waiting: pa.Table, evaluation: pa.Table, cfg: ExperimentConfig, seed: int) -> dict:
    y, w = _y_w(evaluation)
    r = cfg.negative_rate

    def scored(p_trained: np.ndarray) -> tuple[float, float]:
        p = corrected(p_trained, r)
        return auc(y, p, w), calibration(y, p, w)["ece"]

    out: dict = {"seconds": {}}
    t = time.perf_counter()
    p_pop = PopularityBaseline().fit(train).predict_full(evaluation)  # already full-distribution
    out["auc_popularity"], out["ece_popularity"] = auc(y, p_pop, w), calibration(y, p_pop, w)["ece"]
    out["seconds"]["popularity"] = time.perf_counter() - t

    t = time.perf_counter()
    mf = BiasedMF(dim=cfg.dim, seed=seed).fit(train)
    out["auc_mf"], out["ece_mf"] = scored(mf.predict(evaluation))
    out["epochs_mf"] = mf.report.epochs
    out["seconds"]["mf"] = time.perf_counter() - t

    if has_lgbm_features(train):
        # LightGBM on the same split, where the examples carry its features (the simulator's
        # served features; MovieLens ratings have ids and a few attributes only)
        t = time.perf_counter()
        lgbm = LGBMRanker.fit(train, rounds=cfg.lgbm_rounds, params={"seed": seed})
        out["auc_lgbm"], out["ece_lgbm"] = scored(lgbm.predict(evaluation))
        out["seconds"]["lgbm"] = time.perf_counter() - t

    t = time.perf_counter()
    batch = MonolithRanker(dim=cfg.dim, seed=seed)
    report = batch.fit(train, batch_size=cfg.batch_size)
    out["auc_batch"], out["ece_batch"] = scored(batch.predict(evaluation))
    out["auc_collisionless"] = out["auc_batch"]  # the same model: collisionless is the default
    out["epochs_batch"] = report.epochs
    out["seconds"]["batch"] = time.perf_counter() - t

    out["auc_by_sync"] = {}
    for name, interval in cfg.intervals:
        t = time.perf_counter()
        model = MonolithRanker(dim=cfg.dim, seed=seed)
        model.fit(train, batch_size=cfg.batch_size, epochs=report.epochs)  # the batch model, again
        p = progressive(model, waiting, evaluation, interval_s=interval, label_window_s=cfg.label_window_s,
                        batch_size=cfg.batch_size)
        out["auc_by_sync"][name] = scored(p)[0]
        out["seconds"][f"online_{name}"] = time.perf_counter() - t
    shortest = min(cfg.intervals, key=lambda kv: kv[1])[0] if cfg.intervals else None
    out["auc_online"] = out["auc_by_sync"][shortest] if shortest else float("nan")

    everything = pa.concat_tables([train, waiting, evaluation])
    for equal, key in (("parameters", "auc_hashing"), ("memory", "auc_hashing_equal_memory")):
        t = time.perf_counter()
        slots, rows = hashing_slots(batch, cfg.dim, equal=equal)
        hashed = MonolithRanker(dim=cfg.dim, seed=seed, slots=slots)
        hashed.fit(train, batch_size=cfg.batch_size)
        out[key] = scored(hashed.predict(evaluation))[0]
        out.setdefault("hashing_rows", {})[equal] = rows
        out.setdefault("hashing_collision_rate_by", {})[equal] = {
            slot: collision_stats(everything.column(slot).to_numpy().astype(np.int64), rows[slot])["id_collision_rate"]
            for slot in ("user_id", "video_id")}
        out["seconds"][key] = time.perf_counter() - t
    out["collisionless_rows"] = {s: len(tb) for s, tb in batch.embeddings.tables.items()}
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """These models' tensors are small (a batch of 512 rows): torch's intra-op threads do not
    speed them up, and on a busy 2-core machine their spin-waits made a run 6x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def compare(train: pa.Table, evaluation: pa.Table, cfg: ExperimentConfig) -> dict:
    """Every arm on one split, for each seed: means, standard deviations and per-seed values."""
    with _one_torch_thread():
        return _compare(train, evaluation, cfg)


def _compare(train: pa.Table, evaluation: pa.Table, cfg: ExperimentConfig) -> dict:
    train = train.take(pc.sort_indices(train, [("ts_ms", "ascending")]))
    evaluation = evaluation.take(pc.sort_indices(evaluation, [("ts_ms", "ascending")]))
    cut_ms = int(evaluation.column("ts_ms")[0].as_py()) if evaluation.num_rows else 0
    labelled, waiting = labelled_before(train, cut_ms, cfg.label_window_s)
    runs = [_one_seed(labelled, waiting, evaluation, cfg, seed) for seed in cfg.seeds]
    result: dict = {"seeds": list(cfg.seeds), "std": {}, "per_seed": runs,
                    "train_examples": labelled.num_rows, "train_examples_label_pending": waiting.num_rows,
                    "eval_examples": evaluation.num_rows, "label_window_s": cfg.label_window_s,
                    "sync_intervals_s": dict(cfg.intervals)}
    for key in AUC_KEYS + ("ece_popularity", "ece_mf", "ece_batch"):
        result[key], result["std"][key] = _mean_std([run[key] for run in runs])
    if all("auc_lgbm" in run for run in runs):
        for key in ("auc_lgbm", "ece_lgbm"):
            result[key], result["std"][key] = _mean_std([run[key] for run in runs])
    result["auc_online_by_sync"] = {}
    for name, _ in cfg.intervals:
        m, s = _mean_std([run["auc_by_sync"][name] for run in runs])
        result["auc_online_by_sync"][name] = m
        result["std"][f"auc_online_{name}"] = s
    result["hashing_collision_rate"] = runs[0]["hashing_collision_rate_by"]["parameters"]
    result["hashing_collision_rate_equal_memory"] = runs[0]["hashing_collision_rate_by"]["memory"]
    result["epochs"] = {"batch": [run["epochs_batch"] for run in runs], "mf": [run["epochs_mf"] for run in runs]}
    result["verdict"] = verdict(result)
    return result


def _beats(result: dict, a: str, b: str) -> str:
    """'yes' (beyond one standard deviation of both), 'tie' (within), or 'no'."""
    diff = result[a] - result[b]
    spread = max(result["std"].get(a, 0.0), result["std"].get(b, 0.0))
    if diff > spread:
        return "yes"
    return "tie" if diff >= -spread else "no"


def verdict(result: dict) -> dict:
    """The issue's three claims, judged plainly against the standard deviation over seeds."""
    better_baseline = max(("auc_popularity", "auc_mf"), key=lambda k: result[k])
    return {"batch_vs_best_baseline": _beats(result, "auc_batch", better_baseline),
            "best_baseline": better_baseline.removeprefix("auc_"),
            "online_vs_batch": _beats(result, "auc_online", "auc_batch"),
            "collisionless_vs_hashing": _beats(result, "auc_collisionless", "auc_hashing")}


def markdown(result: dict) -> str:
    """The comparison as a table a person reads: mean ± std over the seeds."""
    std = result["std"]
    rows = [(label, result[key], std[key]) for label, key in (
        ("item popularity (baseline)", "auc_popularity"), ("matrix factorisation (baseline)", "auc_mf"),
        ("DeepFM ranker, batch only (collisionless)", "auc_batch"))]
    if "auc_lgbm" in result:
        rows.append(("LightGBM on the served features, batch", result["auc_lgbm"], std["auc_lgbm"]))
    rows += [(f"online, synced {name.replace('_', ' ')}", value, std[f"auc_online_{name}"])
             for name, value in result["auc_online_by_sync"].items()]
    rows += [(label, result[key], std[key]) for label, key in (
        ("hashing trick, equal parameter count", "auc_hashing"),
        ("hashing trick, equal memory", "auc_hashing_equal_memory"))]
    lines = [f"| arm | AUC (mean ± std over {len(result['seeds'])} seeds) |", "|---|---|"]
    lines += [f"| {label} | {mean:.4f} ± {spread:.4f} |" for label, mean, spread in rows]
    v = result["verdict"]
    lines.append(f"\nbatch beats the better baseline ({v['best_baseline']}): {v['batch_vs_best_baseline']}; "
                 f"online beats batch: {v['online_vs_batch']}; collisionless beats hashing: "
                 f"{v['collisionless_vs_hashing']} ('tie' = within one standard deviation). "
                 f"ECE of the batch ranker: {result['ece_batch']:.4f}.")
    return "\n".join(lines)
