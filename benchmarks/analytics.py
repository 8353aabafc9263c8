"""One simulated day of events through tagging, features and every analytics mart.

    python benchmarks/analytics.py --events 10000000     # the target scale (make bench-analytics)
    python benchmarks/analytics.py --events 500000       # a quick run

1. Not timed: simulate one day of ``--events`` events (KuaiRec catalog when present) and ingest it
   into the lake (``tiktok-pipelines simulate`` / ``ingest``, in a child process each).
2. Timed, in a fresh child process so its peak memory is this step's alone, through Dagster
   in-process on an ephemeral instance, exactly the assets a production run materialises:
   the catalog dims, ``warehouse_lake_tables``, ``video_tags`` (train + tag every video), every
   seed and SQL model (staging -> intermediate -> marts) with their column checks, the
   attribution marts, then the features partition of the next day (which reads this day's
   events), and ``analytics_db`` (the analysts' copy).

Last line, one JSON object: {"events", "seconds", "peak_rss_mb", ...}. Target on the 2-core
machine at 10M events: <= 120 s and <= 4 GiB peak.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KUAIREC = Path(__file__).resolve().parents[2] / "shared" / "data" / "kuairec"
START = "2026-11-01"


def timed_part(data_dir: Path) -> dict:
    os.environ["TIKTOK_DATA_DIR"] = str(data_dir)
    import dagster as dg

    from tiktok_pipelines.definitions import defs as load_defs

    defs = load_defs()
    graph = defs.resolve_asset_graph()
    skip_groups = {"ingest", "training", "features", "experiments"}
    selection = sorted(k for k in graph.get_all_asset_keys()
                       if graph.get(k).is_materializable and graph.get(k).group_name not in skip_groups
                       and graph.get(k).partitions_def is None)
    phases = {}
    with dg.instance_for_test() as instance:
        t0 = time.perf_counter()
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=selection, raise_on_error=False)
        phases["tags_models_attribution_s"] = round(time.perf_counter() - t0, 2)
        failed = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        checks_failed = sorted({e.event_specific_data.check_name
                                for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
                                and not e.event_specific_data.passed})
        steps = {}
        for e in result.all_events:  # where the time goes: the slowest steps
            if e.event_type_value == "STEP_SUCCESS":
                steps[e.step_key] = round(e.event_specific_data.duration_ms / 1000, 2)
        slowest = dict(sorted(steps.items(), key=lambda kv: -kv[1])[:8])
        t1 = time.perf_counter()
        day_after = (dt.date.fromisoformat(START) + dt.timedelta(days=1)).isoformat()
        instance.add_dynamic_partitions("feature_dates", [day_after])  # the features' partitions come from the data
        features = defs.resolve_job_def("features_daily").execute_in_process(
            instance=instance, partition_key=day_after, raise_on_error=False)
        publish = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey("analytics_db")], raise_on_error=False)
        phases["features_and_publish_s"] = round(time.perf_counter() - t1, 2)
        seconds = time.perf_counter() - t0
    return {"seconds": round(seconds, 2), "success": result.success and features.success and publish.success,
            "failed_steps": failed, "failed_checks": checks_failed, "assets": len(selection) + 3, **phases,
            "slowest_steps_s": slowest,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--videos", type=int, default=20_000)
    p.add_argument("--workdir", default=None, help="keep the data here (default: a temp dir, removed)")
    p.add_argument("--timed-part", default=None, help=argparse.SUPPRESS)  # the child process
    args = p.parse_args()
    if args.timed_part:
        print(json.dumps(timed_part(Path(args.timed_part))))
        return 0

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-analytics-"))
    data = work / "data"
    cli = [sys.executable, "-m", "tiktok_pipelines.cli"]
    kuairec = str(KUAIREC) if (KUAIREC / "video_captions.csv").exists() else "none"
    try:
        t = time.perf_counter()
        sim = subprocess.run(cli + ["simulate", "--out", str(data), "--days", "1", "--events-per-day", str(args.events),
                                    "--users", str(args.users), "--videos", str(args.videos), "--kuairec", kuairec,
                                    "--start-date", START], check=True, capture_output=True, text=True)
        ing = subprocess.run(cli + ["ingest", "--data-dir", str(data)], check=True, capture_output=True, text=True)
        ingested = json.loads(ing.stdout.strip().splitlines()[-1])
        print(f"setup (simulate + ingest, not timed): {time.perf_counter() - t:.1f}s; "
              f"{json.loads(sim.stdout.strip().splitlines()[-1]).get('catalog_source')} catalog", file=sys.stderr)
        child = subprocess.run([sys.executable, __file__, "--timed-part", str(data)], capture_output=True, text=True,
                               env={**os.environ, "DAGSTER_HOME": str(work / "dagster_home")})
        if child.returncode != 0:
            print(child.stderr[-4000:], file=sys.stderr)
            return 1
        timed = json.loads(child.stdout.strip().splitlines()[-1])
        # events = what reached the lake (the marts' input); the day's dirty lines are in quarantine
        out = {"events": ingested["rows_lake"], **timed, "events_generated": args.events, "users": args.users,
               "videos": args.videos, "ingest": {k: ingested[k] for k in ingested if k != "reasons"}}
        print(json.dumps(out))
        return 0 if timed["success"] else 1
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
