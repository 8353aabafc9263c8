"""The landing sensor: new files -> ingest runs.

Cursor: a high-water mark of arrival time (``arrived_ns``: a file's ctime, so a file renamed in
counts from its rename, and a preserved or future mtime cannot move the mark) plus the keys of
the files that arrived within ``sensor_grace_s`` of the mark. Each tick lists the landing zone and requests runs, in groups of
``files_per_run``, for every file that arrived after ``mark - grace`` and is not among those keys.
The grace window covers the listing itself: a directory walk is not atomic, so a file renamed into
a folder the walk already passed can be older than the newest file the walk saw. Without it that
file would fall behind the mark and wait for a full run (the soak test caught this).

``run_key`` is the batch id, derived from the files' identities, so a tick that re-requests the
same files launches nothing new; the ingest itself skips files already in the ingest log, so even
a run launched twice changes nothing.

The sweep. Two kinds of file never come back into the window: one whose arrival time falls behind
it (the clock that sets ctimes, the landing host's or the NFS server's, stepped backwards), and one
whose ingest run failed for good (its retries spent on a full disk, a run worker killed) — its
``run_key`` is used, so Dagster would not launch it again. No scheduled job ingests (the daily and
hourly jobs read the lake), so without the sweep such files would wait for a person to run
``ingest_job``. Every ``sensor_sweep_s`` the sensor therefore compares the whole landing zone with
the ingest log and requests every file behind the window that is neither ingested nor named by a
run still queued or in progress. Its runs carry the tag ``landing/sweep`` and a run key of their own
per sweep, so a group whose run failed is tried again at the next sweep, not skipped as a replay.
A run in flight with no file list (``build_all``, a manual run) may take the same files: the second
run then skips them (ingest log), so the overlap costs a run, never a duplicate.
"""


import json
import time

import dagster as dg

from tiktok_pipelines.defs.ops.policies import IN_FLIGHT
from tiktok_pipelines.defs.resources import IngestPolicy, PlatformStorage
from tiktok_pipelines.ingest.engine import Lake, batch_id_for
from tiktok_pipelines.ingest.landing import LandingFile, list_landing_files


def files_named_by(run_config) -> list[str]:
    """The landing paths a run's config gives ``ingest_landing``; [] for a run that takes every
    pending file (no file list) or does not ingest."""
    cfg = (run_config or {}).get("ops", {}).get("ingest_landing", {}).get("config", {})
    return list(cfg.get("files") or [])


def _files_in_flight(instance: dg.DagsterInstance) -> set[str]:
    """Landing paths named by ingest runs that are queued or running (any job, any sensor)."""
    named: set[str] = set()
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT)):
        named.update(files_named_by(run.run_config))
    return named


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
    description="Requests an ingest run for new landing files (high-water-mark cursor); every "
    "sensor_sweep_s also for files behind the cursor that no run ingested (tag landing/sweep).",
)
def landing_sensor(context: dg.SensorEvaluationContext, storage: PlatformStorage, ingest_policy: IngestPolicy):
    cursor = json.loads(context.cursor) if context.cursor else None
    files = list_landing_files(storage.landing)
    grace_ns = int(ingest_policy.sensor_grace_s * 1e9)
    now_ns = time.time_ns()
    sweep: list[LandingFile] = []
    if cursor is None:
        # First tick on this instance: files an earlier run already ingested are not new.
        done = Lake(storage.lake_location, storage.lake_store).ingested_keys()
        new = [f for f in files if f.key not in done]
        mark, swept_ns, sweeps = 0, now_ns, 0  # this tick looked at everything: it counts as a sweep
    else:
        # "mtime_ns": the cursor of earlier versions (a mark alone, no recent keys).
        mark = cursor.get("arrived_ns", cursor.get("mtime_ns", 0))
        recent = set(cursor.get("recent", []))
        new = [f for f in files if f.arrived_ns > mark - grace_ns and f.key not in recent]
        swept_ns, sweeps = cursor.get("swept_ns", 0), cursor.get("sweeps", 0)
        if ingest_policy.sensor_sweep_s > 0 and now_ns - swept_ns >= ingest_policy.sensor_sweep_s * 1e9:
            # Runs first, then the log: a run that ends in between has committed before it ended.
            in_flight = _files_in_flight(context.instance)
            done = Lake(storage.lake_location, storage.lake_store).ingested_keys()
            # Behind the window only: inside it the cursor's keys already decide (and a run asked
            # for on the last tick is in flight by now).
            sweep = [f for f in files if f.arrived_ns <= mark - grace_ns and f.key not in done
                     and f.rel_path not in in_flight]
            swept_ns, sweeps = now_ns, sweeps + 1
            if sweep:
                context.log.warning(
                    f"sweep {sweeps}: {len(sweep)} landing files behind the cursor are not ingested and no "
                    f"run is taking them (first: {sweep[0].rel_path}); requesting them again")
    if files:
        mark = max(mark, max(f.arrived_ns for f in files))
        # Every file inside the new window is requested by now (this tick or an earlier one).
        recent = sorted(f.key for f in files if f.arrived_ns > mark - grace_ns)
    else:
        recent = []
    state = {"arrived_ns": mark, "recent": recent, "swept_ns": swept_ns, "sweeps": sweeps}
    if state != cursor:
        context.update_cursor(json.dumps(state))
    if not new and not sweep:
        yield dg.SkipReason(f"no new landing files ({len(files)} seen)")
        return
    step = max(1, ingest_policy.files_per_run)
    yield from _requests(new, step)
    # The sweep number in the key: a group whose run failed is launched again at the next sweep
    # (Dagster skips a run key it has seen), while a replay of this tick asks for the same keys.
    yield from _requests(sweep, step, key_prefix=f"sweep{sweeps}-", tags={"landing/sweep": str(sweeps)})
