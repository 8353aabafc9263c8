"""The daily batch retrain: train both rankers on every day of examples but the last, evaluate them
on the last, register each, let the challenger replace the champion unless it is worse by more
than the margin on the same day, and publish a new torch champion to the serving directory as a
full version (Monolith's batch path beside the online one).

No Dagster here: ``defs/training/assets.py`` (``batch_rankers``) turns the ``BatchReport`` into the
asset's metadata.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tiktok_pipelines.training.joiner import examples_lake_versions, has_examples, read_examples

log = logging.getLogger(__name__)

MODELS = ("lgbm_ranker", "torch_ranker")


@dataclass(frozen=True)
class BatchSettings:
    """What a retrain may vary. No defaults here: they are ``TrainingPolicy``'s and
    ``JoinerPolicy``'s (``defs/resources.py``), one place."""

    negative_rate: float
    lgbm_rounds: int
    torch_dim: int
    torch_admit_min_count: int | None
    torch_batch_size: int
    promotion_margin_auc: float
    keep_full_snapshots: int


@dataclass
class ModelOutcome:
    """One ranker's retrain: the version it was registered as, its metrics on the evaluation day,
    and the champion's on the same day (None without a champion, or one that cannot be loaded)."""

    version: int
    metrics: dict[str, Any]
    promoted: bool
    champion_auc: float | None = None


@dataclass
class BatchReport:
    """What one retrain did. ``skipped`` says why nothing was trained (then the rest is empty)."""

    skipped: str | None = None
    eval_day: str | None = None
    train_days: int = 0
    torch_epochs: int = 0
    models: dict[str, ModelOutcome] = field(default_factory=dict)
    serving_seq: int | None = None  # the full version a new torch champion was published as
    # Every registered version of each model: (model, version, eval day, metrics, promoted).
    history: list[tuple[str, int, str, dict[str, Any], bool]] = field(default_factory=list)


def examples_by_day(lake) -> tuple[pa.Table | None, list]:
    """(every example, ordered by time; its distinct impression dates, ascending)."""
    if not has_examples(lake):
        return None, []
    table = read_examples(lake, order_by="ts_ms")  # the table's committed snapshot
    if table is None:
        return None, []
    return table, sorted(set(table.column("event_date").to_pylist()))


def retrain_and_promote(lake, models_root: str | os.PathLike, serving, settings: BatchSettings, *,
                        logger: logging.Logger | Any = log) -> BatchReport:
    """Retrain, evaluate, register and promote both rankers on the ``lake``'s examples; publish a
    promoted torch ranker to ``serving`` (a local folder or an object store location). ``logger``:
    where the decisions are told (the asset passes its run's log)."""
    from tiktok_pipelines.training.lgbm import LGBMRanker
    from tiktok_pipelines.training.registry import ModelRegistry
    from tiktok_pipelines.training.torch_ranker import MonolithRanker

    table, days = examples_by_day(lake)
    if len(days) < 2:
        # Day one of a deployment: nothing to evaluate on yet. Not a failure of build_all.
        return BatchReport(skipped=f"batch retraining needs two days of examples, found {len(days)}")
    eval_date = days[-1]
    eval_day = eval_date.isoformat()
    train = table.filter(pc.less(table.column("event_date"), pa.scalar(eval_date)))
    test = table.filter(pc.equal(table.column("event_date"), pa.scalar(eval_date)))
    registry = ModelRegistry(models_root)
    trained_through_ms = int(train.column("ts_ms")[train.num_rows - 1].as_py())
    card = {"train_window": [days[0].isoformat(), days[-2].isoformat()], "eval_day": eval_day,
            "negative_rate": settings.negative_rate, "train_examples": train.num_rows, "eval_examples": test.num_rows,
            # Per example date, the events tables' Delta versions its examples were joined from:
            # build_examples(..., versions=...) at these rebuilds exactly what this model saw.
            "lake_versions": {d: v for d, v in examples_lake_versions(lake).items()
                              if days[0].isoformat() <= d <= eval_day}}

    trained = {
        "lgbm_ranker": (LGBMRanker.fit(train, rounds=settings.lgbm_rounds), LGBMRanker),
        "torch_ranker": (MonolithRanker(dim=settings.torch_dim, admit_min_count=settings.torch_admit_min_count),
                         MonolithRanker),
    }
    torch_fit = trained["torch_ranker"][0].fit(train, batch_size=settings.torch_batch_size)
    report = BatchReport(eval_day=eval_day, train_days=len(days) - 1, torch_epochs=torch_fit.epochs)
    for name, (model, cls) in trained.items():
        outcome = _register_and_decide(registry, name, model, cls, test, settings, card,
                                       now_s=trained_through_ms // 1000, logger=logger)
        report.models[name] = outcome
        if outcome.promoted and isinstance(model, MonolithRanker):
            report.serving_seq = _publish_champion(serving, model, name, outcome.version, eval_day, settings,
                                                   trained_through_ms)
    report.history = registry_history(registry, list(trained))
    return report


def _register_and_decide(registry, name: str, model, cls, test: pa.Table, settings: BatchSettings, card: dict,
                         *, now_s: int, logger) -> ModelOutcome:
    """Evaluate the challenger and the champion on the same day, register the challenger, decide."""
    from tiktok_pipelines.training.evaluate import evaluate
    from tiktok_pipelines.training.torch_ranker import IncompatibleModel, MonolithRanker

    y, rate = test.column("engaged").to_numpy().astype(float), test.column("sample_rate").to_numpy()
    r = settings.negative_rate
    metrics = evaluate(y, model.predict(test), r, rate)
    champion = registry.champion(name)
    champion_metrics = None
    if champion is not None:
        try:
            champion_model = cls.load(registry.path(name, champion["version"]))
        except IncompatibleModel as e:  # saved by an older release: nothing to compare with
            logger.warning(f"{name}: champion v{champion['version']} cannot be loaded ({e}); "
                           "the challenger is judged without it")
        else:
            champion_metrics = evaluate(y, champion_model.predict(test), r, rate)

    def write(d):
        if isinstance(model, MonolithRanker):
            model.save(d, now_s=now_s)
        else:
            model.save(d)

    version = registry.register(name, write, {**card, "metrics": metrics})
    champion_auc = champion_metrics["auc"] if champion_metrics else None
    decision = registry.decide(name, version, metrics["auc"], champion_auc, margin=settings.promotion_margin_auc)
    logger.info(f"{name} v{version}: AUC {metrics['auc']:.4f}, promoted={decision['promoted']}")
    return ModelOutcome(version=version, metrics=metrics, promoted=decision["promoted"], champion_auc=champion_auc)


def _publish_champion(serving, model, name: str, version: int, eval_day: str, settings: BatchSettings,
                      trained_through_ms: int) -> int:
    """Publish a new torch champion's tables and dense weights as a full serving version; its seq."""
    from tiktok_pipelines.serving.store import ServingPublisher

    published = ServingPublisher(serving, keep_full=settings.keep_full_snapshots).publish(
        model.embeddings.tables, now_s=trained_through_ms // 1000, dense=model.dense_state(), full=True,
        # A fresh model: its export drops the ids not seen within the TTL before the end of
        # its training window, which is what expiry is for (a window longer than the TTL
        # drops many). The mass-expiry guard is for updates of served tables (online);
        # here the clock is the training data's last event, validated and bounded by the
        # wall clock at ingest.
        allow_mass_expiry=True,
        metadata={"model": name, "version": version, "eval_day": eval_day,
                  # the server corrects the ranker's scores for the negatives it dropped
                  "negative_rate": settings.negative_rate,
                  # the online updates continue from the end of the training window
                  "trained_through_ms": trained_through_ms})
    return published["seq"]


def registry_history(registry, models: list[str]) -> list[tuple[str, int, str, dict[str, Any], bool]]:
    """Every registered version of ``models``: (model, version, eval day, metrics, promoted)."""
    rows = []
    for name in models:
        promoted = {h["challenger"]: h["promoted"] for h in (registry.champion(name) or {}).get("history", [])}
        for v in registry.versions(name):
            c = registry.card(name, v)
            rows.append((name, v, c["eval_day"], c["metrics"], promoted.get(v, False)))
    return rows
