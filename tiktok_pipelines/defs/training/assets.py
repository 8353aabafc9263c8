"""Training: labelled examples (the joiner), the daily batch retrain with its registry, and the
sensor-driven online updates that publish deltas to the serving directory."""


import math

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from tiktok_pipelines.defs.ingest.assets import raw_key
from tiktok_pipelines.defs.ops.policies import (
    BATCH_MODEL_FRESHNESS,
    ONLINE_MODEL_LAG,
    TRAINING_RETRY,
    TRANSIENT_RETRY,
    retry_only_transient,
)
from tiktok_pipelines.defs.resources import (
    IngestPolicy,
    JoinerPolicy,
    PlatformStorage,
    TrainingPolicy,
)
from tiktok_pipelines.training.batch import BatchReport, BatchSettings, retrain_and_promote
from tiktok_pipelines.training.example_checks import by_date, failing_counts
from tiktok_pipelines.training.joiner import (
    HISTORY_FEATURES,
    LABELS,
    SERVED_FEATURES,
    build_examples,
    examples_source,
)

GROUP = "training"


def _examples_lake(storage: PlatformStorage):
    """The lake the examples tables (``examples``, ``examples_meta``) and the streaming join's
    state and outputs (``_stream_join``, ``stream_examples``, ``online_counters``) live in: beside
    the events, in ``lake_uri``'s bucket when it is set, else in the local lake folder."""
    from tiktok_pipelines.ingest.engine import Lake

    return Lake(storage.lake_location, store=storage.lake_store)

ONLINE_POOL = "online_update"  # one slot (dagster.yaml): see online_ranker


EXAMPLE_CHECKS = {
    "labels_valid": "Every label is 0 or 1 (no NULL), and they agree with each other and with the "
    "sampling: finished = watch_ratio >= 1, engaged = liked or shared or commented or followed or "
    "watch_ratio >= engaged_watch_ratio, watch_ratio >= 0, sample_rate = 1 for positives and r for negatives.",
    "keys_present_and_unique": "No NULL in example_id, ts_ms, user_id, video_id, request_id, "
    "event_date; one row per example_id.",
    "point_in_time": "Each example lies in its impression's date (event_date = UTC date of ts_ms) and "
    "no served feature describes a video published after the impression (video_age_h >= 0). The "
    "history counts are counted strictly before the impression by the join itself (training/joiner.py).",
    "not_empty": "Some examples, once the lake holds impressions.",
}
# A bad label or key trains a wrong model: the retrain downstream in the same run does not start.
_BLOCKING = {"labels_valid", "keys_present_and_unique"}


def _round(x: float | None, digits: int = 4) -> float | None:
    """Four significant digits: what a person compares (0.7312, 0.001235, 1234.0), not 16."""
    if x is None:
        return None
    x = float(x)
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, max(0, digits - 1 - math.floor(math.log10(abs(x)))))


def _examples_checks(con: duckdb.DuckDBPyConnection, source: str | None, config, has_impressions: bool):
    """The checks' results, from one scan of the examples' committed snapshot."""
    counts = failing_counts(con, source, negative_rate=config.negative_rate,
                            engaged_watch_ratio=config.engaged_watch_ratio)

    def result(name: str, failing: dict[str, int], why: str = "") -> dg.AssetCheckResult:
        bad = {k: v for k, v in failing.items() if v}
        return dg.AssetCheckResult(
            check_name=name, passed=not bad, severity=dg.AssetCheckSeverity.ERROR,
            description=why or (f"{EXAMPLE_CHECKS[name]} Failing rows: " + ", ".join(f"{k} {v:,}" for k, v in bad.items())
                                if bad else None),
            metadata={**failing, "rows": counts["rows"]})

    return [
        result("labels_valid", {k: counts[k] for k in ("null_labels", "inconsistent_labels", "bad_sample_rate")}),
        result("keys_present_and_unique", {k: counts[k] for k in ("null_keys", "duplicate_ids")}),
        result("point_in_time", {k: counts[k] for k in ("misdated", "video_after_impression")}),
        result("not_empty", {"missing_examples": int(has_impressions and counts["rows"] == 0)},
               "the lake holds impressions and the examples table none" if has_impressions and not counts["rows"]
               else ("" if counts["rows"] else "no impression in the lake yet: nothing to join")),
    ]


def _column_schema(lake) -> dg.TableSchema | None:
    """The examples table's columns as its Delta log declares them (Arrow types)."""
    from tiktok_pipelines.training.joiner import EXAMPLES_TABLE

    t = lake.store.table(EXAMPLES_TABLE)
    if t is None:
        return None
    schema = pa.schema(t.schema().to_arrow())
    return dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in schema])


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb", "parquet"},
    deps=[raw_key("impressions"), raw_key("views"), raw_key("interactions")],
    description="One labelled example per impression: served features, point-in-time history "
    "counts, labels from the actions in the label window, negatives downsampled (sample_rate). "
    "Reads the events tables at one committed Delta version each (recorded as lake_versions, and "
    "per date in the examples_meta Delta table: pinning them reproduces the read). "
    "Rebuilds only the dates whose lake partitions changed. Labels: training/joiner.py.",
    metadata={
        "path": "lake/examples (Delta table, partitioned by event_date; per-date fingerprints and "
        "lake versions in lake/examples_meta)",
        "labels": ", ".join(LABELS),
        "features": ", ".join([*SERVED_FEATURES, *HISTORY_FEATURES, "hour_of_day"]),
    },
    check_specs=[dg.AssetCheckSpec(name, asset="training_examples", description=text, blocking=name in _BLOCKING)
                 for name, text in EXAMPLE_CHECKS.items()],
)
def training_examples(context: dg.AssetExecutionContext, storage: PlatformStorage,
                      joiner_policy: JoinerPolicy) -> dg.MaterializeResult:
    from tiktok_pipelines.ingest.engine import events_table

    config = joiner_policy.config()
    lake = _examples_lake(storage)
    report = build_examples(lake, config)
    context.log.info(f"built {len(report.built)} dates, {len(report.skipped)} unchanged")
    con = duckdb.connect()
    try:
        source = examples_source(con, lake) if report.built or report.skipped else None
        stats = by_date(con, source) if source is not None else []
        checks = _examples_checks(con, source, config, lake.store.row_count(events_table("impressions")) > 0)
    finally:
        con.close()
    schema = _column_schema(lake)
    table = "| date | examples | engaged | played | finished |\n|---|---|---|---|---|\n" + "\n".join(
        f"| {d} | {n:,} | {e:.3f} | {p:.3f} | {f:.3f} |" for d, n, e, p, f in stats)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(r[1] for r in stats),
            **({"dagster/column_schema": schema} if schema is not None else {}),
            "dates_built": dg.MetadataValue.table(
                records=[dg.TableRecord({"date": d, "examples": n}) for d, n in sorted(report.built.items())],
                schema=dg.TableSchema(columns=[dg.TableColumn("date", "string"), dg.TableColumn("examples", "int")])),
            "dates_unchanged": len(report.skipped),
            # The Delta version of each events table this build read: build_examples(...,
            # versions=...) reads the same rows again (time travel).
            "lake_versions": dg.MetadataValue.table(
                records=[dg.TableRecord({"table": t, "version": v}) for t, v in sorted(report.versions.items())],
                schema=dg.TableSchema(columns=[dg.TableColumn("table", "string"), dg.TableColumn("version", "int")])),
            "by_date (sampled rates)": dg.MetadataValue.md(table),
            "negative_rate": config.negative_rate,
            "label_window_s": config.label_window_s,
        },
        check_results=checks,
    )


@dg.asset(
    group_name=GROUP,
    kinds={"lightgbm", "pytorch"},
    output_required=False,
    deps=[training_examples],
    description="Daily batch retrain: a LightGBM ranker and the two-tower torch ranker (collisionless "
    "id tables) trained on every day but the last and evaluated on the last (AUC, log loss, "
    "calibration after the log-odds correction). Each is registered; a challenger replaces the "
    "champion unless worse by more than the margin on the same day. A new torch champion is "
    "published to the serving directory as a full version.",
    retry_policy=TRAINING_RETRY,  # one retry, and only of a transient error: a retry trains again
    freshness_policy=BATCH_MODEL_FRESHNESS,  # the daily retrain the server's full snapshots come from
)
@retry_only_transient
def batch_rankers(context: dg.AssetExecutionContext, storage: PlatformStorage, joiner_policy: JoinerPolicy,
                  training_policy: TrainingPolicy) -> dg.MaterializeResult:
    settings = BatchSettings(
        negative_rate=joiner_policy.negative_rate, lgbm_rounds=training_policy.lgbm_rounds,
        torch_dim=training_policy.torch_dim, torch_admit_min_count=training_policy.torch_admit_min_count,
        torch_batch_size=training_policy.torch_batch_size,
        promotion_margin_auc=training_policy.promotion_margin_auc,
        keep_full_snapshots=training_policy.keep_full_snapshots)
    report = retrain_and_promote(_examples_lake(storage), storage.models, storage.serving_location, settings,
                                 logger=context.log)
    if report.skipped:
        context.log.warning(f"{report.skipped}; skipped")
        return
    yield dg.MaterializeResult(metadata=_batch_metadata(report))


def _batch_metadata(report: BatchReport) -> dict:
    metadata: dict = {"eval_day": report.eval_day, "train_days": report.train_days,
                      "torch_ranker/epochs": report.torch_epochs}
    for name, m in report.models.items():
        for k in ("auc", "log_loss", "ece"):
            metadata[f"{name}/{k}"] = _round(m.metrics[k])
        metadata[f"{name}/version"] = m.version
        metadata[f"{name}/promoted"] = m.promoted
        if m.champion_auc is not None:
            metadata[f"{name}/champion_auc_same_day"] = _round(m.champion_auc)
    if report.serving_seq is not None:
        metadata["serving_seq"] = report.serving_seq
    history = "| model | version | eval day | AUC | log loss | ECE | promoted |\n|---|---|---|---|---|---|---|\n"
    for name, v, eval_day, m, promoted in report.history:
        history += (f"| {name} | {v} | {eval_day} | {m['auc']:.4f} | {m['log_loss']:.4f} | "
                    f"{m['ece']:.4f} | {promoted} |\n")
    metadata["registry (AUC over days)"] = dg.MetadataValue.md(history)
    return metadata


@dg.asset(
    group_name=GROUP,
    kinds={"pytorch"},
    output_required=False,
    deps=[batch_rankers, raw_key("impressions"), raw_key("views"), raw_key("interactions")],
    description="Online micro-batch update (Monolith): the streaming joiner joins the newly ingested "
    "batches (impressions wait in keyed state until an event-time watermark closes their label window; "
    "late arrivals are counted), and the impressions it emits go through the same training step, from the model's "
    "current state; only the embedding rows they touched are published, as a delta. Dense "
    "weights go out when `online_dense_every_s` of event time has passed; the trainer keeps its whole state "
    "(rows, dense weights, optimizer state) in its own checkpoint between runs. Driven by `online_update_sensor`.",
    retry_policy=TRANSIENT_RETRY,  # publishing is atomic and restarts from the served state: safe to retry
    # No time-window freshness policy: it warned on an idle instance. The check follows_events
    # (below) says whether the model follows the events that arrived.
    # One update at a time: each trains from the version the last one published. The serving
    # directory's writer lock already serialises them; the pool (one slot, dagster.yaml) makes a
    # second run wait in the queue, visibly, instead of in a process blocked on the lock.
    pool=ONLINE_POOL,
)
@retry_only_transient
def online_ranker(context: dg.AssetExecutionContext, storage: PlatformStorage, joiner_policy: JoinerPolicy,
                  training_policy: TrainingPolicy, ingest_policy: IngestPolicy):
    from tiktok_pipelines.training.online import default_checkpoint_root, online_update

    # The lake where the ingest puts it (local folder or lake_uri's bucket): the streaming join's
    # state, its examples and the online counters live beside the events, on the same store.
    # The serving versions where servers read them (serving_uri's bucket or the local folder); the
    # trainer's checkpoint stays on this host's disk beside the local serving folder either way.
    report = online_update(_examples_lake(storage), storage.serving_location, joiner_policy.config(),
                           checkpoint_root=default_checkpoint_root(storage.serving),
                           dense_every_s=training_policy.online_dense_every_s,
                           full_every=training_policy.online_full_every,
                           batch_size=training_policy.online_batch_size,
                           keep_full=training_policy.keep_full_snapshots, stream=joiner_policy.stream(),
                           max_expire_fraction=training_policy.max_expire_fraction,
                           allow_mass_expiry=training_policy.allow_mass_expiry,
                           # the same bound on event time as the ingest's (names, events)
                           clock_skew_s=ingest_policy.clock_ahead_seconds)
    joined = report.joined
    if joined is not None:
        # the streaming joiner ran first: what it joined, and what arrived too late to label
        context.log.info(f"streaming join: step {joined.seq}, {joined.batches} batches, "
                         f"{joined.counts.emitted_impressions} impressions closed, {joined.counts.pending} waiting, "
                         f"{joined.counts.late_actions} late actions, {joined.counts.late_impressions} late impressions")
    if report.published_seq is None:
        context.log.info(f"nothing published: {report.reason}")
        return
    yield dg.MaterializeResult(metadata=_online_metadata(report))


def _online_metadata(report) -> dict:
    joined = report.joined
    return {
        "stream/step": joined.seq,
        "stream/impressions_closed": joined.counts.emitted_impressions,
        "stream/impressions_waiting": joined.counts.pending,
        "stream/late_actions": joined.counts.late_actions,
        "stream/late_impressions": joined.counts.late_impressions,
        "stream/watermark": dg.MetadataValue.timestamp(joined.counts.watermark_ms / 1000),
        "examples": report.examples,
        "serving_seq": report.published_seq,
        "base_seq": report.base_seq,
        "rows_published": report.rows_published,
        "dense_published": report.dense_published,
        "resumed_from": report.resumed_from,
        "trained_through_ms": report.trained_through_ms,
        "seconds": round(report.seconds, 3),
    }


online_update_job = dg.define_asset_job(
    "online_update_job", selection=[online_ranker],
    description="One online update of the torch ranker (see online_ranker).",
    executor_def=dg.in_process_executor,  # one step: no second process per run (see ingest_job)
)


# --- does the online model follow the events? ------------------------------------------------------

FOLLOWS_EVENTS = "follows_events"
FOLLOWS_EVENTS_TEXT = (
    "The published online model follows the ingested events: the newest event time ingested (the "
    "streams the online join reads) minus the newest trained-through time of the published "
    "versions (a daily batch retrain's full version, trained through an earlier day, is no lag), "
    "less what the streaming join must wait by design (label window + allowed lateness), is the "
    "lag. WARN past TIKTOK_FRESHNESS_ONLINE_WARN_MIN (15), FAIL past _FAIL_MIN (60). No new event, "
    "no lag: an idle platform stays green however old the model. Evaluated by "
    "online_freshness_sensor whenever the ingest log or the serving directory changes.")


def _newest_event_ms(lake) -> int | None:
    """The newest event time ingested into the streams the online join reads: the max ``ts_ms`` of
    each events table's newest date partition (the Delta log names its files; one day's ``ts_ms``
    column is read). Event time, not the files' flush time: a producer flushes a batch window at
    its end, so the newest flush runs ahead of the newest event by up to a window (45 min in the
    simulator's hourly files at night), which is no lag of the model."""
    from tiktok_pipelines.ingest.engine import events_table
    from tiktok_pipelines.training.joiner import JOIN_STREAMS

    newest = None
    for stream in JOIN_STREAMS:
        acts = lake.store.add_actions(events_table(stream))
        if acts is None or acts.num_rows == 0:
            continue
        day = pc.max(acts.column("partition.event_date")).as_py()
        ds = lake.store.dataset(events_table(stream), partitions=[("event_date", "=", day)])
        ts = pc.max(ds.to_table(columns=["ts_ms"]).column("ts_ms")).as_py()
        if ts is not None and (newest is None or ts > newest):
            newest = int(ts)
    return newest


def _model_through_ms(serving, *, after_seq: int = 0, known_ms: int | None = None) -> tuple[int | None, int | None]:
    """(newest seq, newest trained_through_ms) among the published versions after ``after_seq``,
    starting from ``known_ms`` (what versions up to it were trained through): what the online path
    has reached. The newest, not the newest version's: the daily full version of the batch retrain
    is trained through the day before its evaluation day, and the next online update continues from
    there over the stream's examples; a daily retrain is no lag of the online path. Manifests only."""
    from tiktok_pipelines.serving.store import CorruptVersion, list_versions, read_version_manifest

    seqs = list_versions(serving)
    through = known_ms
    for seq in seqs:
        if seq <= after_seq:
            continue
        try:
            value = (read_version_manifest(serving, seq).get("metadata") or {}).get("trained_through_ms")
        except (CorruptVersion, FileNotFoundError):
            continue
        if value is not None and (through is None or int(value) > through):
            through = int(value)
    return (seqs[-1] if seqs else None), through


def online_lag(storage: PlatformStorage, joiner_policy: JoinerPolicy, *, after_seq: int = 0,
               known_ms: int | None = None) -> dict:
    """What follows_events judges: the newest event time ingested, what the online path has
    trained through, the gap the streaming join keeps by design, and the lag beyond it (ms; None
    when not measurable). Both times are event time: the lag grows only as events arrive.
    ``after_seq``/``known_ms``: versions already read (the sensor's cursor)."""
    events = _newest_event_ms(_examples_lake(storage))
    seq, model = _model_through_ms(storage.serving_location, after_seq=after_seq, known_ms=known_ms)
    by_design = (joiner_policy.config().label_window_s + joiner_policy.stream().allowed_lateness_s) * 1000
    lag = None if events is None or model is None else max(0, events - model - by_design)
    return {"events_through_ms": events, "model_through_ms": model, "serving_seq": seq,
            "by_design_ms": by_design, "lag_ms": lag}


def follows_events_evaluation(lag: dict) -> tuple[str, dg.AssetCheckEvaluation]:
    """("pass" | "warn" | "fail", the check's evaluation) for ``online_lag``'s numbers."""
    warn, fail = ONLINE_MODEL_LAG.warn.total_seconds() * 1000, ONLINE_MODEL_LAG.fail.total_seconds() * 1000
    ms = lag["lag_ms"]
    if lag["events_through_ms"] is None:
        status, why = "pass", "no event ingested yet: nothing to follow"
    elif lag["model_through_ms"] is None:
        status, why = "pass", ("no online model published yet (the batch retrain publishes the first; "
                               "batch_rankers' freshness covers it)")
    else:
        status = "fail" if ms > fail else "warn" if ms > warn else "pass"
        why = (f"the model trails the arrived events by {ms / 60_000:.1f} min beyond the "
               f"{lag['by_design_ms'] / 60_000:.0f} min the streaming join waits by design "
               f"(warn past {warn / 60_000:.0f}, fail past {fail / 60_000:.0f})")
    metadata = {
        "lag_minutes": None if ms is None else round(ms / 60_000, 1),
        "warn_minutes": round(warn / 60_000, 1), "fail_minutes": round(fail / 60_000, 1),
        "by_design_minutes": round(lag["by_design_ms"] / 60_000, 1),
        "serving_seq": lag["serving_seq"],
    }
    for key in ("events_through_ms", "model_through_ms"):
        if lag[key] is not None:
            metadata[key.removesuffix("_ms")] = dg.MetadataValue.timestamp(lag[key] / 1000)
    evaluation = dg.AssetCheckEvaluation(
        asset_key=online_ranker.key, check_name=FOLLOWS_EVENTS, passed=status == "pass",
        severity=dg.AssetCheckSeverity.ERROR if status == "fail" else dg.AssetCheckSeverity.WARN,
        description=why, metadata=metadata)
    return status, evaluation


@dg.asset_check(asset=online_ranker, name=FOLLOWS_EVENTS, description=FOLLOWS_EVENTS_TEXT, blocking=False)
def online_ranker_follows_events(storage: PlatformStorage, joiner_policy: JoinerPolicy) -> dg.AssetCheckResult:
    """The same judgement on demand (the UI's "Execute"): online_freshness_sensor reports it without a run."""
    _, e = follows_events_evaluation(online_lag(storage, joiner_policy))
    return dg.AssetCheckResult(passed=e.passed, severity=e.severity, description=e.description, metadata=e.metadata)


daily_training_job = dg.define_asset_job(
    "daily_training_job", selection=[training_examples, batch_rankers],
    description="Refresh the examples, retrain and evaluate both rankers, promote or keep the champions.",
)

daily_training_schedule = dg.ScheduleDefinition(
    job=daily_training_job,
    cron_schedule="0 3 * * *",  # after midnight's last label windows (30 min) and late files have landed
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="The daily batch retrain (Monolith's batch path beside the online one).",
)


class ExperimentConfig(dg.Config):
    train_days: int = 5
    closed_loop_days: int = 4
    seeds: int = 3


@dg.asset(
    group_name="experiments",
    deps=[training_examples],
    kinds={"torch", "matplotlib"},
    description="Monolith's experiments on the lake's examples: (a) batch-only vs online sync intervals, "
    "(b) collisionless vs hashing trick at equal parameter count, each beside the baselines (item popularity, "
    "matrix factorisation) over several seeds, (d) the closed loop (the model serves simulated "
    "users for several days, batch-only vs online). Tables and PNG plots in data/experiments; minutes of "
    "CPU, so it runs in its own job (experiments_job), not in build_all.",
)
def monolith_experiments(context: dg.AssetExecutionContext, config: ExperimentConfig, storage: PlatformStorage,
                         joiner_policy: JoinerPolicy, training_policy: TrainingPolicy) -> dg.MaterializeResult:
    from tiktok_pipelines.experiments.report import run_experiments

    report = run_experiments(storage.data_dir, train_days=config.train_days, negative_rate=joiner_policy.negative_rate,
                             dim=training_policy.torch_dim, closed_loop_days=config.closed_loop_days,
                             seeds=config.seeds)
    r = report.result
    metadata: dict = {"results": dg.MetadataValue.md(report.markdown)}
    metadata.update({f"auc/online_{k}": _round(v) for k, v in r["auc_online_by_sync"].items()})
    metadata.update({f"auc/{k.removeprefix('auc_')}": _round(r[k])
                     for k in ("auc_popularity", "auc_mf", "auc_batch", "auc_collisionless", "auc_hashing")})
    metadata.update({f"verdict/{k}": str(v) for k, v in r["verdict"].items()})
    metadata.update({f"hashing_collision_rate/{k}": _round(v) for k, v in r["hashing_collision_rate"].items()})
    metadata.update({f"closed_loop_engaged/{k}": _round(v) for k, v in r.get("closed_loop_engaged_rate", {}).items()})
    metadata.update({f"plot/{p.stem}": dg.MetadataValue.path(str(p)) for p in report.plots})
    return dg.MaterializeResult(metadata=metadata)


experiments_job = dg.define_asset_job(
    "experiments_job", selection=[monolith_experiments],
    description="Run Monolith's experiments (a), (b), (d) and refresh their tables and plots.",
)
