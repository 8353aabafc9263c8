"""Training's sensors: an online update when ingestion commits new batches, and the online
model's follows_events check evaluated (without a run) when the ingest log or serving changes.
The assets and the check they drive are in ``assets.py`` beside this file."""

import json

import dagster as dg

from tiktok_pipelines.defs.resources import JoinerPolicy, PlatformStorage
from tiktok_pipelines.defs.training.assets import (
    FOLLOWS_EVENTS,
    _examples_lake,
    follows_events_evaluation,
    online_lag,
    online_ranker,
    online_update_job,
)


def ingest_log_position(lake) -> tuple[str, int] | None:
    """(table id, newest version) of the lake's ingest log, a Delta table: each ingested batch is
    one commit of it (its last), so a new version means new committed batches. None before the
    first batch. Cheap: the Delta log since its last checkpoint, no data file is read."""
    from tiktok_pipelines.ingest.engine import INGEST_LOG_DIR, Lake

    t = (lake if isinstance(lake, Lake) else Lake(lake)).store.table(INGEST_LOG_DIR)
    if t is None:
        return None
    version = t.version()
    if version == 0 and t.get_add_actions().num_rows == 0:
        return None  # created empty (TableStore.commit creates before the first batch commits)
    return t.metadata().id, version


@dg.sensor(
    job=online_update_job,
    # As often as the landing sensor: a tick reads the ingest log's Delta log and counts runs, and
    # the interval is a straight addition to freshness (landing -> served delta).
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests an online update when ingestion commits new batches (a new version of "
    "the lake's ingest_log Delta table), unless one is already waiting to start. Cheap: the Delta "
    "log's newest version and one run count per tick.",
)
def online_update_sensor(context: dg.SensorEvaluationContext, storage: PlatformStorage):
    # Where the ingest commits: the bucket when lake_uri is set (the local folder would stay empty).
    position = ingest_log_position(_examples_lake(storage))
    if position is None:
        yield dg.SkipReason("no ingested batch yet")
        return
    table_id, version = position
    mark = json.loads(context.cursor) if context.cursor else None
    # A cursor of another table (the lake was rebuilt) or of the old layout (commit files) is no mark.
    if mark is not None and mark.get("table_id") == table_id and version <= mark.get("version", -1):
        yield dg.SkipReason(f"no batch committed since ingest_log version {mark['version']}")
        return
    # An update trains up to the lake's watermark when its step starts, so one that has not started
    # yet will also take these batches. Requesting another per commit only grows a queue of runs
    # (updates take turns in the pool `online_update`) that mostly find nothing left to train,
    # while the newest data waits behind them: under the daemon's soak the queue reached 7 runs.
    # The cursor stays put, so a later tick requests the update once the waiting one has started.
    waiting = context.instance.get_runs_count(dg.RunsFilter(
        job_name=online_update_job.name,
        statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING]))
    if waiting:
        yield dg.SkipReason(f"an online update is already waiting to start ({waiting} queued)")
        return
    context.update_cursor(json.dumps({"table_id": table_id, "version": version}))
    # run_key: the newest commit; a tick that sees several new batches trains on all of them at once
    yield dg.RunRequest(run_key=f"online-ingest_log-{table_id}-v{version}",
                        tags={"online/ingest_log_version": str(version)})


@dg.sensor(
    name="online_freshness_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates online_ranker's follows_events check (no run) when the ingest log or the "
    "serving directory changed, and records it when its status changes; entering FAIL also writes "
    "an alert line (data/alerts/alerts.jsonl). Quiet while no event arrives.",
)
def online_freshness_sensor(context: dg.SensorEvaluationContext, storage: PlatformStorage,
                            joiner_policy: JoinerPolicy):
    from tiktok_pipelines.alerts import append_alert
    from tiktok_pipelines.defs.ops.alerts import lag_alert_record
    from tiktok_pipelines.serving.store import list_versions

    # What can change the verdict: a new ingest_log version or a new serving version. The lag is in
    # event time, so with neither nothing needs reading.
    position = ingest_log_position(_examples_lake(storage))
    seqs = list_versions(storage.serving_location)
    state = {"log": list(position) if position else None, "seq": seqs[-1] if seqs else None}
    mark = json.loads(context.cursor) if context.cursor else {}
    if mark and {k: mark.get(k) for k in state} == state:
        return dg.SkipReason(f"no new batch or model version since the last evaluation ({mark.get('status')})")
    if state["seq"] is None or (mark.get("seq") or 0) > state["seq"]:
        mark = {"status": mark.get("status")}  # a new serving directory: read its versions afresh
    lag = online_lag(storage, joiner_policy, after_seq=mark.get("seq") or 0, known_ms=mark.get("model_through_ms"))
    status, evaluation = follows_events_evaluation(lag)
    cursor = json.dumps({**state, "status": status, "model_through_ms": lag["model_through_ms"]})
    if mark.get("status") == status:
        # Recorded already: one event per change of status, not one per ingested batch.
        return dg.SensorResult(cursor=cursor, skip_reason=f"still {status}: {evaluation.description}")
    if status == "fail":
        record = lag_alert_record(f"{online_ranker.key.to_user_string()}:{FOLLOWS_EVENTS}", evaluation.description,
                                  evaluation.metadata)
        append_alert(storage.alerts, record)
        context.log.error(f"ALERT {record['check']}: {record['error']}")
    return dg.SensorResult(cursor=cursor, asset_events=[evaluation])
