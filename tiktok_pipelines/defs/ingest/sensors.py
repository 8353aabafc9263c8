"""The landing sensor: new files -> ingest runs.

What is pending is decided from the lake, not from the cursor: a landing file is pending when the
ingest log has no row for its identity (``Lake.ingested_keys``) and no queued or running run names
it in its config. Each tick requests runs, in groups of ``files_per_run``, for the pending files.
Runs before the log: a run that ends in between has committed its batch before it ended.

The window between a request and its commit: the daemon creates a tick's runs (NOT_STARTED, then
queued) before it evaluates the sensor again, so on the next tick those files are named by a run in
flight and are not requested twice. ``run_key`` is the batch id, derived from the files'
identities, so a replayed tick (the daemon resumes a tick it crashed in with the same cursor) asks
for the same keys and Dagster launches each once; and the ingest skips files already in the log,
so even a run launched twice changes nothing.

A file whose run ended without ingesting it (failed for good: retries spent on a full disk, a run
worker killed; or canceled) waits for the sweep: every ``sensor_sweep_s`` every pending file is
requested again, with a run key of its own per sweep (``sweep<n>-``, tag ``landing/sweep``), so a
group whose run failed is tried again, not skipped as a replay of a used key. Between sweeps the
files named by such runs (ended since the last sweep) are left alone, so a broken disk is not
hammered by a run per tick. No scheduled job ingests (the daily and hourly jobs read the lake), so
without the sweep such files would wait for a person to run ``ingest_job``. A run in flight with no
file list (``build_all``, a manual run) may take the same files: the second run then skips them
(ingest log), so the overlap costs a run, never a duplicate.

The cursor is small and bounded whatever the size of the landing zone: the number of landing
files, a digest of their identities and the newest arrival seen (a file's ctime), and when the last
sweep ran. When the listing is the one of the last tick and no sweep is due, nothing can have
become pending that was not requested already, so the tick ends after the listing without reading
the log or the runs. Cursors of earlier versions (a mark plus the keys of recent files, thousands
of them under load) are read for their sweep count and otherwise ignored: the lake decides.
"""


import datetime as dt
import json
import time

import dagster as dg

from tiktok_pipelines.defs.ops.policies import IN_FLIGHT
from tiktok_pipelines.defs.resources import IngestPolicy, PlatformStorage
from tiktok_pipelines.ingest.engine import Lake, batch_id_for
from tiktok_pipelines.ingest.landing import LandingFile, list_landing_files

# Runs that ended without ingesting what they named; their files wait for the next sweep.
ENDED_UNDONE = [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.CANCELING]
# The run store's clock and the sensor's may differ a little: a run that ended this long before the
# last sweep still counts as ended after it (its files wait one sweep more at worst, or were taken).
_CLOCK_SLACK_S = 60


def files_named_by(run_config) -> list[str]:
    """The landing paths a run's config gives ``ingest_landing``; [] for a run that takes every
    pending file (no file list) or does not ingest."""
    cfg = (run_config or {}).get("ops", {}).get("ingest_landing", {}).get("config", {})
    return list(cfg.get("files") or [])


def _files_named(instance: dg.DagsterInstance, filters: dg.RunsFilter) -> set[str]:
    named: set[str] = set()
    for run in instance.get_runs(filters=filters):
        named.update(files_named_by(run.run_config))
    return named


def _files_in_flight(instance: dg.DagsterInstance) -> set[str]:
    """Landing paths named by ingest runs that are queued or running (any job, any sensor)."""
    return _files_named(instance, dg.RunsFilter(statuses=IN_FLIGHT))


def _files_of_runs_ended_since(instance: dg.DagsterInstance, since_ns: int) -> set[str]:
    """Landing paths named by runs that failed or were canceled since ``since_ns``."""
    after = dt.datetime.fromtimestamp(since_ns / 1e9 - _CLOCK_SLACK_S, tz=dt.timezone.utc)
    return _files_named(instance, dg.RunsFilter(statuses=ENDED_UNDONE, updated_after=after))


def read_cursor(raw: str | None) -> dict | None:
    """The cursor's state, or None on a first tick. An earlier version's cursor (``recent`` keys,
    ``mtime_ns``) or one that does not parse is accepted: only its sweep count and time are kept,
    and with no ``listing`` the tick reads the lake."""
    if not raw:
        return None
    try:
        state = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(state, dict):
        return None
    out = {}
    for k in ("files", "arrived_ns", "swept_ns", "sweeps"):
        if isinstance(state.get(k), int):
            out[k] = state[k]
    if isinstance(state.get("listing"), str):
        out["listing"] = state["listing"]
    return out


def _requests(group_files: list[LandingFile], step: int, key_prefix: str = "", tags=None):
    for i in range(0, len(group_files), step):
        group = group_files[i : i + step]
        yield dg.RunRequest(
            run_key=key_prefix + batch_id_for(group),
            run_config={"ops": {"ingest_landing": {"config": {"files": [f.rel_path for f in group]}}}},
            tags={"landing/files": str(len(group)), "landing/first": group[0].rel_path, **(tags or {})},
        )


@dg.sensor(
    job_name="ingest_job",
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests an ingest run for landing files that the lake's ingest log does not hold "
    "and no queued or running run names; every sensor_sweep_s also for files whose run failed "
    "(tag landing/sweep). The cursor is a digest of the listing, not a list of files.",
)
def landing_sensor(context: dg.SensorEvaluationContext, storage: PlatformStorage, ingest_policy: IngestPolicy):
    cursor = read_cursor(context.cursor)
    if context.cursor and (cursor is None or "listing" not in cursor):
        context.log.info(f"cursor of an earlier version ({len(context.cursor):,} characters) replaced; "
                         "pending files are read from the lake's ingest log")
    files = list_landing_files(storage.landing)
    now_ns = time.time_ns()
    listing = batch_id_for(files)
    state = {
        "files": len(files),
        "arrived_ns": max([f.arrived_ns for f in files] + [(cursor or {}).get("arrived_ns", 0)]),
        "listing": listing,
        "swept_ns": (cursor or {}).get("swept_ns", now_ns),  # a first tick reads everything: a sweep
        "sweeps": (cursor or {}).get("sweeps", 0),
    }
    sweep_due = (cursor is not None and ingest_policy.sensor_sweep_s > 0
                 and now_ns - state["swept_ns"] >= ingest_policy.sensor_sweep_s * 1e9)
    if cursor is not None and cursor.get("listing") == listing and not sweep_due:
        # The same files as the last tick, which requested every pending one or left it to the sweep.
        yield dg.SkipReason(f"no new landing files ({len(files)} seen)")
        return

    # Runs first, then the log: a run that ends in between has committed before it ended.
    in_flight = _files_in_flight(context.instance)
    done = Lake(storage.lake_location, storage.lake_store).ingested_keys()
    pending = [f for f in files if f.key not in done and f.rel_path not in in_flight]
    held = _files_of_runs_ended_since(context.instance, state["swept_ns"]) if cursor is not None else set()
    new = [f for f in pending if f.rel_path not in held]
    # Only the files of runs that ended without ingesting them go under a sweep key: a file that
    # merely arrived since the last tick is new on a sweep tick as on any other.
    held_back = [f for f in pending if f.rel_path in held]
    sweep: list = []
    if sweep_due:
        state["swept_ns"], state["sweeps"] = now_ns, state["sweeps"] + 1
        sweep = held_back
        if sweep:
            context.log.warning(
                f"sweep {state['sweeps']}: {len(sweep)} landing files are not ingested and no run is taking "
                f"them (first: {sweep[0].rel_path}); requesting them again")
    elif held_back:
        context.log.info(f"{len(held_back)} landing files whose run failed wait for the next sweep")

    if state != cursor:
        context.update_cursor(json.dumps(state))
    if not new and not sweep:
        yield dg.SkipReason(f"no new landing files ({len(files)} seen, {len(pending)} pending)")
        return
    step = max(1, ingest_policy.files_per_run)
    yield from _requests(new, step)
    # The sweep number in the key: a group whose run failed is launched again at the next sweep
    # (Dagster skips a run key it has seen), while a replay of this tick asks for the same keys.
    yield from _requests(sweep, step, key_prefix=f"sweep{state['sweeps']}-", tags={"landing/sweep": str(state["sweeps"])})
