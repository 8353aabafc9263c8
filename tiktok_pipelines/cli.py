"""``tiktok-pipelines``: the command line around the plain libraries.

    tiktok-pipelines simulate --out data --days 7           # a week of a simulated platform
    tiktok-pipelines simulate --out data --first-day next   # one more day of the same world
    tiktok-pipelines ingest --data-dir data                 # landing -> lake, without Dagster
    tiktok-pipelines run build_all                          # a job, recorded in $DAGSTER_HOME
    tiktok-pipelines serve --data-dir data --port 8000      # the model server (hot-reloads data/serving)

Each command prints a one-line JSON summary last, so scripts can read it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
from pathlib import Path

DEFAULT_KUAIREC = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "kuairec"


def _json_default(o: object) -> object:
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)  # type: ignore[arg-type]
    if isinstance(o, (dt.date, dt.datetime, Path)):
        return str(o)
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _cmd_simulate(args: argparse.Namespace) -> int:
    from tiktok_pipelines.simulator import simulate

    kuairec = None
    if args.kuairec and args.kuairec != "none":
        kuairec = Path(args.kuairec)
        if not (kuairec / "video_captions.csv").exists():
            print(f"note: no KuaiRec catalog at {kuairec}; generating captions instead", file=sys.stderr)
            kuairec = None
    out = Path(args.out)
    first_day = args.first_day
    if first_day == "next":
        runs_file = out / "truth" / "runs.json"
        runs = json.loads(runs_file.read_text()) if runs_file.exists() else []
        first_day = max((r["first_day"] + r["days"] for r in runs), default=0)
    summary = simulate(
        out,
        first_day=int(first_day),
        seed=args.seed,
        users=args.users,
        videos=args.videos,
        days=args.days,
        events_per_day=args.events_per_day,
        start_date=dt.date.fromisoformat(args.start_date),
        kuairec_dir=kuairec,
        batch_minutes=args.batch_minutes,
        dirty_rate=args.dirty_rate,
        late_rate=args.late_rate,
    )
    print(json.dumps(summary.to_dict(), default=_json_default))
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    from tiktok_pipelines.ingest.engine import IngestSettings, ingest_files
    from tiktok_pipelines.ingest.landing import list_landing_files

    data = Path(args.data_dir)
    landing, lake = data / "landing", data / "lake"
    report = ingest_files(
        list_landing_files(landing),
        landing_root=landing,
        lake_root=lake,
        settings=IngestSettings(future_skew_seconds=args.future_skew_seconds, max_lateness_days=args.max_lateness_days),
    )
    out = {"batch_id": report.batch_id, "seconds": round(report.seconds, 3), **report.totals(),
           "skipped_files": len(report.skipped_files), "reasons": dict(report.reasons)}
    print(json.dumps(out))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    """Execute a job in this process against the instance in $DAGSTER_HOME (so the run, its
    metadata and lineage show up in `dagster dev` afterwards)."""
    import dagster as dg

    from tiktok_pipelines.definitions import defs

    home = os.environ.get("DAGSTER_HOME")
    instance = dg.DagsterInstance.get() if home else dg.DagsterInstance.ephemeral()
    job = defs().resolve_job_def(args.job)
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    print(json.dumps({"job": args.job, "run_id": result.run_id, "success": result.success}))
    return 0 if result.success else 1


def _cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from tiktok_pipelines.serving.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(Path(args.data_dir), host=args.host, port=args.port, reload_interval_s=args.reload_interval)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tiktok-pipelines", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="write a simulated platform's landing files, catalog and truth")
    s.add_argument("--out", default=os.environ.get("TIKTOK_DATA_DIR", "data"))
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--users", type=int, default=10_000)
    s.add_argument("--videos", type=int, default=20_000)
    s.add_argument("--days", type=int, default=7)
    s.add_argument("--events-per-day", type=int, default=300_000)
    s.add_argument("--start-date", default="2026-11-01", help="the world's day 0")
    s.add_argument("--first-day", default="0",
                   help="first day to simulate, counted from --start-date; 'next' continues the world in --out")
    s.add_argument("--kuairec", default=str(DEFAULT_KUAIREC),
                   help="KuaiRec folder for the real catalog ('none' to generate captions)")
    s.add_argument("--batch-minutes", type=int, default=15)
    s.add_argument("--dirty-rate", type=float, default=0.01)
    s.add_argument("--late-rate", type=float, default=0.005)
    s.set_defaults(func=_cmd_simulate)

    i = sub.add_parser("ingest", help="ingest every pending landing file (no Dagster)")
    i.add_argument("--data-dir", default=os.environ.get("TIKTOK_DATA_DIR", "data"))
    i.add_argument("--future-skew-seconds", type=int, default=300)
    i.add_argument("--max-lateness-days", type=int, default=30)
    i.set_defaults(func=_cmd_ingest)

    r = sub.add_parser("run", help="execute a Dagster job in-process (default: build_all)")
    r.add_argument("job", nargs="?", default="build_all")
    r.set_defaults(func=_cmd_run)

    v = sub.add_parser("serve", help="serve recommendations from data/serving, hot-reloading new versions")
    v.add_argument("--data-dir", default=os.environ.get("TIKTOK_DATA_DIR", "data"))
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--reload-interval", type=float, default=1.0, help="seconds between checks for new versions")
    v.set_defaults(func=_cmd_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
