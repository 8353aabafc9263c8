"""Alert records: every failed run of this code location becomes one line in the alert log
(``run_failure_alert_sensor`` in ``sensors.py`` writes them).

A check that enters FAIL without a run (online_ranker's follows_events) is recorded the same way
(``lag_alert_record``). An alert names the run, its job, the steps that failed with their errors, the first error, the
partition and what launched the run (schedule, sensor, backfill). It is appended to
``storage.alerts`` (``data/alerts/alerts.jsonl``) with one O_APPEND write (``tiktok_pipelines/alerts.py``)
and logged at ERROR in the sensor's tick log, so a pager, a log shipper or ``tail -f`` can follow it.
"""

import datetime as dt

import dagster as dg

ERROR_CHARS = 4000  # per error: the first lines of a message say what failed; the run page has the rest
LAUNCH_TAGS = ("dagster/schedule_name", "dagster/sensor_name", "dagster/backfill", "dagster/partition")


def _error_text(error) -> str:
    """The root cause's message: the user's exception, with its type ("module.Class: message"),
    rather than Dagster's wrapper around it ("Error occurred while executing op ...")."""
    if error is None:
        return ""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()[:ERROR_CHARS]


def alert_record(context: dg.RunFailureSensorContext) -> dict:
    """The JSON object one failed run becomes."""
    run = context.dagster_run
    steps: dict[str, str] = {}
    for event in context.get_step_failure_events():
        data = event.event_specific_data
        steps[event.step_key] = _error_text(getattr(data, "error", None)) or (event.message or "")
    run_error = getattr(context.failure_event.event_specific_data, "error", None)
    # A run can fail with no failed step (a crashed run worker, a run that could not start).
    error = next(iter(steps.values()), "") or _error_text(run_error) or (context.failure_event.message or "")
    return {
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "run_id": run.run_id,
        "job": run.job_name,
        "failed_steps": sorted(steps),
        "step_errors": steps,
        "error": error,
        "launched_by": {k: run.tags[k] for k in LAUNCH_TAGS if k in run.tags},
    }


def lag_alert_record(check: str, error: str, metadata: dict) -> dict:
    """The JSON object a check entering FAIL outside any run becomes (online_ranker's
    follows_events: events arrive and the model does not follow). Same sink and time format as a
    failed run's; ``check`` instead of ``run_id``/``job``."""
    values = {k: getattr(v, "value", v) for k, v in metadata.items()}
    return {
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "check": check,
        "error": error,
        "details": {k: v for k, v in values.items() if isinstance(v, (int, float, str, bool)) or v is None},
    }
