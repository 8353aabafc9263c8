"""The landing sensor: new files -> ingest runs.

Cursor: a high-water mark (mtime_ns, relative path) of the newest file already requested. Each tick
lists the landing zone, requests runs for files past the mark in groups of ``files_per_run``, and
moves the mark. ``run_key`` is the batch id, derived from the files' identities, so a tick that
re-requests the same files launches nothing new; the ingest itself skips files already in the
ingest log, so even a run launched twice changes nothing.

A file that lands with an older mtime than the mark (a producer that held it back) is not missed
for good: a run with no file list (the daily job, or a manual run) ingests everything pending.
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
    mark = json.loads(context.cursor) if context.cursor else None
    files = list_landing_files(storage.landing)
    if mark is None:
        # First tick on this instance: files an earlier run already ingested are not new.
        done = Lake(storage.lake).ingested_keys()
        new = [f for f in files if f.key not in done]
    else:
        new = [f for f in files if (f.mtime_ns, f.rel_path) > (mark["mtime_ns"], mark["rel_path"])]
    if files:
        last = max(files)
        context.update_cursor(json.dumps({"mtime_ns": last.mtime_ns, "rel_path": last.rel_path}))
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
