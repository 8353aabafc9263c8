"""The landing sensor: new files -> ingest runs.

Cursor: a high-water mark of arrival time (``arrived_ns``: the later of a file's mtime and ctime,
so a file renamed in counts from its rename) plus the keys of the files that arrived within
``sensor_grace_s`` of the mark. Each tick lists the landing zone and requests runs, in groups of
``files_per_run``, for every file that arrived after ``mark - grace`` and is not among those keys.
The grace window covers the listing itself: a directory walk is not atomic, so a file renamed into
a folder the walk already passed can be older than the newest file the walk saw. Without it that
file would fall behind the mark and wait for a full run (the soak test caught this).

``run_key`` is the batch id, derived from the files' identities, so a tick that re-requests the
same files launches nothing new; the ingest itself skips files already in the ingest log, so even
a run launched twice changes nothing. A file that arrives later than the grace window allows (a
clock step backwards) is still not lost: a run with no file list (the daily job, or a manual run)
ingests everything pending.
"""


import json

import dagster as dg

from tiktok_pipelines.defs.resources import IngestPolicy, PlatformStorage
from tiktok_pipelines.ingest.engine import Lake, batch_id_for
from tiktok_pipelines.ingest.landing import list_landing_files


@dg.sensor(
    job_name="ingest_job",
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests an ingest run for new landing files (high-water-mark cursor).",
)
def landing_sensor(context: dg.SensorEvaluationContext, storage: PlatformStorage, ingest_policy: IngestPolicy):
    cursor = json.loads(context.cursor) if context.cursor else None
    files = list_landing_files(storage.landing)
    grace_ns = int(ingest_policy.sensor_grace_s * 1e9)
    if cursor is None:
        # First tick on this instance: files an earlier run already ingested are not new.
        done = Lake(storage.lake).ingested_keys()
        new = [f for f in files if f.key not in done]
        mark = 0
    else:
        # "mtime_ns": the cursor of earlier versions (a mark alone, no recent keys).
        mark = cursor.get("arrived_ns", cursor.get("mtime_ns", 0))
        recent = set(cursor.get("recent", []))
        new = [f for f in files if f.arrived_ns > mark - grace_ns and f.key not in recent]
    if files:
        mark = max(mark, max(f.arrived_ns for f in files))
        # Every file inside the new window is requested by now (this tick or an earlier one).
        recent = sorted(f.key for f in files if f.arrived_ns > mark - grace_ns)
        context.update_cursor(json.dumps({"arrived_ns": mark, "recent": recent}))
    if not new:
        yield dg.SkipReason(f"no new landing files ({len(files)} seen)")
        return
    step = max(1, ingest_policy.files_per_run)
    for i in range(0, len(new), step):
        group = new[i : i + step]
        yield dg.RunRequest(
            run_key=batch_id_for(group),
            run_config={"ops": {"ingest_landing": {"config": {"files": [f.rel_path for f in group]}}}},
            tags={"landing/files": str(len(group)), "landing/first": group[0].rel_path},
        )
