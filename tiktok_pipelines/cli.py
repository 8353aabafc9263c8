"""``tiktok-pipelines``: the command line around the plain libraries.

    tiktok-pipelines simulate --out data --days 7           # a week of a simulated platform
    tiktok-pipelines simulate --out data --first-day next   # one more day of the same world
    tiktok-pipelines ingest --data-dir data                 # landing -> lake, without Dagster
    tiktok-pipelines run build_all                          # a job, recorded in $DAGSTER_HOME
    tiktok-pipelines serve --data-dir data --port 8000      # the model server (hot-reloads data/serving)
    tiktok-pipelines experiment --data-dir data             # Monolith's experiments (a) and (b)

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


def _movielens_experiment(args: argparse.Namespace) -> int:
    from tiktok_pipelines.experiments.monolith import collisionless_vs_hashing_split, online_vs_batch_split
    from tiktok_pipelines.experiments.movielens import read_movielens, time_split

    fmt, examples = read_movielens(Path(args.movielens))
    train, evaluation, cut_ms = time_split(examples, args.train_fraction)
    interval = args.sync_interval
    a = online_vs_batch_split(train, evaluation, negative_rate=1.0, dim=args.dim,
                              intervals={"batch_only": None, "online": interval})
    b = collisionless_vs_hashing_split(train, evaluation, negative_rate=1.0, dim=args.dim)
    cut = dt.datetime.fromtimestamp(cut_ms / 1000, dt.timezone.utc).isoformat()
    print(f"{fmt}: {examples.num_rows:,} ratings; trained on the first {args.train_fraction:.0%} by time "
          f"(before {cut}), evaluated on the rest ({evaluation.num_rows:,}); online syncs every {interval} s")
    print(f"| model | AUC |\n|---|---|\n| batch only | {a['auc']['batch_only']:.4f} |\n"
          f"| online | {a['auc']['online']:.4f} |\n| collisionless | {b['auc_collisionless']:.4f} |\n"
          f"| hashing trick (equal memory) | {b['auc_hashing']:.4f} |")
    print(json.dumps({
        "dataset": fmt, "auc_batch": a["auc"]["batch_only"], "auc_online": a["auc"]["online"],
        "auc_collisionless": b["auc_collisionless"], "auc_hashing": b["auc_hashing"],
        "hashing_collision_rate": b["hashing_collision_rate"],
        "split": {"train_fraction": args.train_fraction, "cut": cut, "train_examples": train.num_rows,
                  "eval_examples": evaluation.num_rows},
        "sync_interval_s": interval, "label": "rating >= 4",
    }))
    return 0


def _cmd_experiment(args: argparse.Namespace) -> int:
    import duckdb

    from tiktok_pipelines.experiments.monolith import collisionless_vs_hashing, online_vs_batch
    from tiktok_pipelines.lake import atomic_write_json
    from tiktok_pipelines.training.joiner import JoinerConfig, build_examples, examples_glob, has_examples

    if args.movielens:
        return _movielens_experiment(args)
    data = Path(args.data_dir)
    lake = data / "lake"
    config = JoinerConfig(negative_rate=args.negative_rate)
    build_examples(lake, config)  # no-op when the examples are current
    if not has_examples(lake):
        print("no examples: simulate and ingest first (make quickstart)", file=sys.stderr)
        return 2
    examples = duckdb.sql(f"SELECT * FROM read_parquet({examples_glob(lake)}, hive_partitioning = true)").to_arrow_table()
    a = online_vs_batch(examples, train_days=args.train_days, negative_rate=config.negative_rate, dim=args.dim)
    b = collisionless_vs_hashing(examples, train_days=args.train_days, negative_rate=config.negative_rate, dim=args.dim)
    print(f"train days {a['train_days'][0]}..{a['train_days'][-1]}, evaluated on {a['eval_days'][0]}..{a['eval_days'][-1]} "
          f"({a['eval_examples']:,} examples, weighted to the full distribution)")
    print("| (a) training | AUC |\n|---|---|")
    for name, value in a["auc"].items():
        print(f"| {name} | {value:.4f} |")
    print("| (b) id tables at equal memory | AUC | distinct users sharing a row | distinct videos sharing a row |")
    print("|---|---|---|---|")
    print(f"| collisionless | {b['auc_collisionless']:.4f} | 0 | 0 |")
    print(f"| hashing trick | {b['auc_hashing']:.4f} | {b['hashing_collision_rate']['user_id']:.2%} | "
          f"{b['hashing_collision_rate']['video_id']:.2%} |")
    result = {
        "dataset": "simulator", "train_days": a["train_days"], "eval_days": a["eval_days"],
        "sync_intervals": {"daily": 86_400, "hourly": 3_600, "every_15_min": 900},
        "auc_batch": a["auc"]["batch_only"], "auc_online": a["auc"]["every_15_min"], "auc_online_by_sync": a["auc"],
        "auc_collisionless": b["auc_collisionless"], "auc_hashing": b["auc_hashing"],
        "hashing_collision_rate": b["hashing_collision_rate"],
    }
    atomic_write_json(data / "experiments" / "monolith.json", result)
    print(json.dumps(result))
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

    e = sub.add_parser("experiment", help="Monolith's experiments on the lake's examples: (a) batch vs "
                       "online sync intervals, (b) collisionless vs hashing trick at equal memory")
    e.add_argument("--data-dir", default=os.environ.get("TIKTOK_DATA_DIR", "data"))
    e.add_argument("--train-days", type=int, default=5)
    e.add_argument("--negative-rate", type=float, default=0.5)
    e.add_argument("--dim", type=int, default=16)
    e.add_argument("--movielens", default=None, help="a MovieLens-100K or ml-latest-small directory "
                   "(format detected from its files) instead of the simulator's examples")
    e.add_argument("--train-fraction", type=float, default=0.8, help="MovieLens: time-ordered split")
    e.add_argument("--sync-interval", type=int, default=86_400, help="MovieLens: online sync, seconds")
    e.set_defaults(func=_cmd_experiment)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
