"""``tiktok-pipelines``: the command line around the plain libraries.

    tiktok-pipelines simulate --out data --days 7           # a week of a simulated platform
    tiktok-pipelines simulate --out data --first-day next   # one more day of the same world
    tiktok-pipelines ingest --data-dir data                 # landing -> lake, without Dagster
    tiktok-pipelines run build_all                          # a job, recorded in $DAGSTER_HOME: a line per step
                                                            # and a summary on stderr (--verbose: DEBUG stream)
    tiktok-pipelines serve --data-dir data --port 8000      # the model server (hot-reloads data/serving)
    tiktok-pipelines serve --serving s3://bucket/serving    # ... or versions on object storage
    tiktok-pipelines experiment --data-dir data             # Monolith's experiments (a), (b), (d) + plots
    tiktok-pipelines attribution --paths paths.csv --out credits.csv  # ChannelAttribution path data
    tiktok-pipelines models docs                            # dbt_like_models/ -> docs/data_dictionary.md
    tiktok-pipelines tagging evaluate --kuairec-file ../shared/data/kuairec/video_captions.csv  # tagging vs baselines

Each command prints a one-line JSON summary last, so scripts can read it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import sys
from pathlib import Path

from tiktok_pipelines import settings

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
    from tiktok_pipelines.layout import DataLayout
    from tiktok_pipelines.simulator import SimulationConfig, simulate

    kuairec = None
    if args.kuairec and args.kuairec != "none":
        kuairec = Path(args.kuairec)
        if not (kuairec / "video_captions.csv").exists():
            print(f"note: no KuaiRec catalog at {kuairec}; generating captions instead", file=sys.stderr)
            kuairec = None
    out = Path(args.out)
    first_day = args.first_day
    if first_day == "next":
        runs_file = DataLayout(out).truth / "runs.json"
        runs = json.loads(runs_file.read_text()) if runs_file.exists() else []
        first_day = max((r["first_day"] + r["days"] for r in runs), default=0)
    # only what was given on the command line: every default lives in SimulationConfig
    given = {"seed": args.seed, "users": args.users, "videos": args.videos, "days": args.days,
             "events_per_day": args.events_per_day, "start_date": args.start_date,
             "batch_minutes": args.batch_minutes, "dirty_rate": args.dirty_rate, "late_rate": args.late_rate}
    config = SimulationConfig(first_day=int(first_day), kuairec_dir=kuairec,
                              **{k: v for k, v in given.items() if v is not None})
    summary = simulate(out, config)
    print(json.dumps(summary.to_dict(), default=_json_default))
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    from tiktok_pipelines.ingest.engine import IngestSettings, ingest_files
    from tiktok_pipelines.ingest.landing import list_landing_files
    from tiktok_pipelines.layout import DataLayout

    data = Path(args.data_dir)
    landing, lake = DataLayout(data).landing, args.lake or DataLayout(data).lake
    report = ingest_files(
        list_landing_files(landing),
        landing_root=landing,
        lake_root=lake,
        settings=IngestSettings(future_skew_seconds=args.future_skew_seconds, max_lateness_days=args.max_lateness_days),
    )
    out = {"batch_id": report.batch_id, "lake": str(lake), "seconds": round(report.seconds, 3), **report.totals(),
           "skipped_files": len(report.skipped_files), "reasons": dict(report.reasons),
           "compiled_lines": report.compiled_lines}
    print(json.dumps(out))
    return 0


# The code location `dagster dev` loads (workspace.yaml's location_name, pyproject's
# [tool.dg.project] code_location_name): the CLI's runs name it so the UI files them under it.
CODE_LOCATION = "tiktok_pipelines"
DEFS_MODULE, DEFS_ATTRIBUTE = "tiktok_pipelines.definitions", "defs"


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m {seconds % 60:02.0f}s"


class _RunReporter:
    """Turns the dagster events of the CLI's runs into what a person reads: a line when a run
    starts, one per finished step (with its time), a failed step's error with its whole stack and
    causes, failed checks and user warnings; and the counts the closing summary quotes. It is fed
    by a dagster logger (``logger_def``), so it sees every event of every run the definitions
    execute, including those ``backfill_features`` starts."""

    def __init__(self, stream, instance, *, steps: bool = True):
        self.stream, self.instance, self.steps = stream, instance, steps
        self.runs: list[dict] = []
        self.failures: list[str] = []
        self.materialized: set[str] = set()
        self.checks = {"passed": 0, "failed": 0}

    def _say(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def handle(self, record) -> None:
        from dagster import DagsterEventType as T

        event = getattr(record, "dagster_event", None)
        if event is None:  # context.log from the assets: warnings and errors only
            if record.levelno >= 30:
                self._say(f"  {record.levelname.lower()}: {getattr(record, 'dagster_meta', {}).get('orig_message', record.getMessage())}")
            return
        kind, step = event.event_type, event.step_key
        if kind == T.RUN_START:
            run = {"run_id": record.dagster_meta["run_id"], "job": event.job_name, "steps": 0, "failed": 0}
            self.runs.append(run)
            dagster_run = self.instance.get_run_by_id(run["run_id"])
            partition = dagster_run.tags.get("dagster/partition") if dagster_run else None
            plan = (self.instance.get_execution_plan_snapshot(dagster_run.execution_plan_snapshot_id)
                    if dagster_run and dagster_run.execution_plan_snapshot_id else None)
            run["of"] = len(plan.step_keys_to_execute) if plan else None
            job = "assets" if event.job_name.startswith("__ASSET_JOB") else event.job_name  # an ad-hoc selection
            if self.steps:
                where = f" [{partition}]" if partition else ""
                steps = f", {run['of']} steps" if run["of"] else ""
                self._say(f"{job}{where}: run {run['run_id'][:8]}{steps}")
        elif kind in (T.STEP_SUCCESS, T.STEP_FAILURE, T.STEP_SKIPPED):
            run = self.runs[-1] if self.runs else {"steps": 0, "failed": 0, "of": None}
            run["steps"] += 1
            ms = getattr(event.event_specific_data, "duration_ms", None)
            took = f"  {_fmt_s(ms / 1000)}" if ms is not None else ""
            mark = {T.STEP_SUCCESS: "ok", T.STEP_FAILURE: "FAILED", T.STEP_SKIPPED: "skipped"}[kind]
            count = f"{run['steps']:>3}/{run['of']}" if run["of"] else f"{run['steps']:>3}"
            if self.steps or kind == T.STEP_FAILURE:
                self._say(f"  [{count}] {mark:<7} {step}{took}")
            if kind == T.STEP_FAILURE:
                run["failed"] += 1
                self.failures.append(step)
                self._error(event.event_specific_data.error)
        elif kind == T.RUN_FAILURE:
            run = self.runs[-1] if self.runs else {"failed": 0}
            error = getattr(event.event_specific_data, "error", None)
            self._say(f"  run {record.dagster_meta['run_id'][:8]} FAILED")
            if error is not None and not run["failed"]:  # a failure outside the steps: its own error
                self._error(error)
        elif kind == T.ASSET_MATERIALIZATION:
            self.materialized.add(event.asset_key.to_user_string())
        elif kind == T.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            self.checks["passed" if evaluation.passed else "failed"] += 1
            if not evaluation.passed:
                self._say(f"      check failed: {evaluation.asset_key.to_user_string()} {evaluation.check_name} "
                          f"({evaluation.severity.value})")

    def _error(self, error) -> None:
        if error is None:
            return
        text = error.to_string() if hasattr(error, "to_string") else str(error)
        for line in text.rstrip().splitlines():
            self._say(f"      {line}")

    def logger_def(self):
        import logging

        import dagster as dg

        reporter = self

        class _Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                reporter.handle(record)

        @dg.logger(description="tiktok-pipelines run: one line per step, errors in full")
        def progress(_init_context) -> logging.Logger:
            log = logging.Logger("tiktok_pipelines.progress", level=logging.DEBUG)  # filtering is handle()'s
            log.addHandler(_Handler())
            return log

        return progress


@contextlib.contextmanager
def _runs_filed_under_code_location(instance):
    """Give the runs this process creates the origin a run launched from the UI has.

    The UI's Overview timeline (dagster-webserver's useRunsForTimeline) drops every run whose
    ``repositoryOrigin`` is null, and that field is the run's ``remote_job_origin``, which
    ``execute_in_process`` never sets (nor does ``dagster job execute``): such runs show under
    Runs but not on the timeline, nor under the code location. The run itself is built by
    ``execute_in_process`` through ``instance.create_run_for_job``, which takes both origins as
    arguments, so for the duration of the command this instance's ``create_run_for_job`` fills
    them in: the code location ``dagster dev -w workspace.yaml`` loads (its name, the single
    repository of a Definitions) and the Python origin of the same module. The run then also
    carries the ``dagster/code_location`` and ``.dagster/repository`` tags the UI filters by.
    """
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.definitions.repository_definition.valid_definitions import SINGLETON_REPOSITORY_NAME
    from dagster._core.remote_origin import ManagedGrpcPythonEnvCodeLocationOrigin, RemoteRepositoryOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    cwd = os.getcwd()
    location = ManagedGrpcPythonEnvCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, module_name=DEFS_MODULE, attribute=DEFS_ATTRIBUTE,
                             working_directory=cwd),
        CODE_LOCATION)
    remote_repository = RemoteRepositoryOrigin(location, SINGLETON_REPOSITORY_NAME)
    python_repository = ReconstructableRepository.for_module(DEFS_MODULE, DEFS_ATTRIBUTE, cwd).get_python_origin()
    create = instance.create_run_for_job

    def create_run_for_job(job_def, **kwargs):
        if kwargs.get("remote_job_origin") is None:
            kwargs["remote_job_origin"] = remote_repository.get_job_origin(job_def.name)
        if kwargs.get("job_code_origin") is None:
            kwargs["job_code_origin"] = python_repository.get_job_origin(job_def.name)
        return create(job_def=job_def, **kwargs)

    instance.create_run_for_job = create_run_for_job
    try:
        yield instance
    finally:
        del instance.create_run_for_job  # the class's method again


def _summary_lines(summary: dict, reporter: _RunReporter, storage, seconds: float) -> list[str]:
    def n(count: int, what: str) -> str:
        return f"{count} {what}{'' if count == 1 else 's'}"

    steps = sum(r["steps"] for r in reporter.runs)
    checks = reporter.checks
    head = ("Done" if summary["success"] else "FAILED") + (
        f" in {_fmt_s(seconds)}: {n(len(reporter.runs), 'run')}, {n(steps, 'step')}, "
        f"{n(len(reporter.materialized), 'asset')} materialized, "
        f"{n(checks['passed'] + checks['failed'], 'check')} ({checks['failed']} failed)")
    lines = ["", head]
    if reporter.failures:
        lines.append("  failed: " + ", ".join(reporter.failures) + " (errors above)")
    analytics = storage.analytics
    lines += [
        f"  lake       {storage.lake_location}  (Delta tables: events, features, examples)",
        f"  warehouse  {storage.warehouse}",
        f"  analytics  {analytics}  (the analysts' read-only copy)",
        f"  serving    {storage.serving_location}  (model versions for `tiktok-pipelines serve`)",
        "Next:",
        "  make dev    # (dagster dev -w workspace.yaml) the UI on http://127.0.0.1:3000: these runs, lineage, checks",
    ]
    if not summary["success"]:
        return lines + ["  (Runs -> the failed run: its steps, logs and errors; fix, then run again)"]
    lines += [
        "  .venv/bin/python -c \"import duckdb; print(duckdb.connect('" + str(analytics) + "', read_only=True)"
        ".sql('SELECT creator_id, sum(views) AS views, sum(reach) AS reach FROM marts.creator_daily "
        "GROUP BY 1 ORDER BY views DESC LIMIT 5'))\"",
    ]
    return lines


def _cmd_run(args: argparse.Namespace) -> int:
    """Execute a job in this process against the instance in $DAGSTER_HOME (so the run, its
    metadata and lineage show up in `dagster dev` afterwards). A person reads one line per step and
    a closing summary on stderr (``--verbose``: dagster's DEBUG stream instead of the step lines);
    stdout holds only the JSON summary, last."""
    import time

    import dagster as dg

    from tiktok_pipelines.definitions import defs
    from tiktok_pipelines.defs.resources import resolved

    started = time.monotonic()
    home = os.environ.get("DAGSTER_HOME")
    instance = dg.DagsterInstance.get() if home else dg.DagsterInstance.ephemeral()
    reporter = _RunReporter(sys.stderr, instance, steps=not args.verbose)
    # A run uses the loggers its run config names, and dagster's DEBUG console stream only when it
    # names none: so every run here (build_all and the feature runs backfill_features starts) names
    # the progress logger, and the console one only with --verbose. Both must be loggers of the
    # jobs, hence the Definitions-level loggers.
    definitions = dg.Definitions.merge(defs(), dg.Definitions(
        loggers={"progress": reporter.logger_def(), "console": dg.colored_console_logger}))
    run_config = {"loggers": {"progress": {},
                              **({"console": {"config": {"log_level": "DEBUG"}}} if args.verbose else {})}}
    job = definitions.resolve_job_def(args.job)
    with _runs_filed_under_code_location(instance):
        result = job.execute_in_process(run_config=run_config, instance=instance, raise_on_error=False)
        summary = {"job": args.job, "run_id": result.run_id, "success": result.success}
        if args.job == "build_all" and result.success:
            # Daily-partitioned features live outside build_all: every date the lake informs, then
            # analytics_db again so the analysts' copy has the features.* views.
            from tiktok_pipelines.defs.features.assets import backfill_features

            summary["features"] = backfill_features(definitions, instance, run_config=run_config)
            summary["success"] = summary["features"]["success"]
    storage = resolved(definitions.resources["storage"])  # its fields may be dg.EnvVar bindings
    for line in _summary_lines(summary, reporter, storage, time.monotonic() - started):
        print(line, file=sys.stderr)
    sys.stderr.flush()
    print(json.dumps(summary))
    return 0 if summary["success"] else 1


def _cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from tiktok_pipelines.serving.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(Path(args.data_dir), host=args.host, port=args.port, reload_interval_s=args.reload_interval,
          serving=args.serving, lake=args.lake)
    return 0


def _movielens_experiment(args: argparse.Namespace) -> int:
    from tiktok_pipelines.experiments.monolith import ExperimentConfig, compare, markdown
    from tiktok_pipelines.experiments.movielens import read_movielens, time_split

    fmt, examples = read_movielens(Path(args.movielens))
    train, evaluation, cut_ms = time_split(examples, args.train_fraction)
    intervals = sorted(set(args.sync_interval or [86_400, 3_600, 900]), reverse=True)
    cfg = ExperimentConfig(negative_rate=1.0, label_window_s=0, dim=args.dim, seeds=tuple(range(args.seeds)),
                           intervals=tuple((f"every_{s}s", s) for s in intervals))
    result = compare(train, evaluation, cfg)
    cut = dt.datetime.fromtimestamp(cut_ms / 1000, dt.timezone.utc).isoformat()
    print(f"{fmt}: {examples.num_rows:,} ratings; trained on the first {args.train_fraction:.0%} by time "
          f"(before {cut}), evaluated on the rest ({evaluation.num_rows:,}); label = rating >= 4")
    print(markdown(result))
    print(json.dumps({
        "dataset": fmt, **{k: result[k] for k in (
            "auc_popularity", "auc_mf", "auc_batch", "auc_online", "auc_collisionless", "auc_hashing",
            "auc_hashing_equal_memory", "auc_online_by_sync", "hashing_collision_rate",
            "hashing_collision_rate_equal_memory", "ece_batch", "ece_mf", "ece_popularity", "seeds", "std",
            "epochs", "verdict")},
        "split": {"train_fraction": args.train_fraction, "cut": cut, "train_examples": train.num_rows,
                  "eval_examples": evaluation.num_rows},
        "sync_interval_s": intervals[-1], "sync_intervals_s": intervals, "label": "rating >= 4",
    }))
    return 0


def _cmd_experiment(args: argparse.Namespace) -> int:
    from tiktok_pipelines.experiments.report import run_experiments

    if args.movielens:
        return _movielens_experiment(args)
    try:
        report = run_experiments(args.data_dir, train_days=args.train_days, negative_rate=args.negative_rate,
                                 dim=args.dim, closed_loop_days=args.closed_loop_days, kuairec_dir=DEFAULT_KUAIREC,
                                 seeds=args.seeds)
    except FileNotFoundError as e:
        print(e, file=sys.stderr)
        return 2
    print(report.markdown)
    print("plots: " + ", ".join(str(p) for p in report.plots))
    print(json.dumps(report.result))
    return 0


def _cmd_attribution(args: argparse.Namespace) -> int:
    """Credits per channel from ChannelAttribution path data, for every timestamp-free model."""
    from tiktok_pipelines.attribution import (
        PathFormatError,
        attribute_paths,
        read_paths,
    )

    try:
        paths = read_paths(args.paths)
    except (PathFormatError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = attribute_paths(paths)
    frame = result.frame()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        frame.write_csv(args.out)
    cols = ["channel", "first", "last", "linear", "position", "markov", "markov_removal_effect", "shapley"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for row in frame.select(cols).iter_rows():
        print("| " + " | ".join([row[0], *(f"{x:.4f}" for x in row[1:])]) + " |")
    summary = result.summary()
    for scores in summary["channels"].values():
        for k, x in scores.items():
            scores[k] = round(x, 12)  # float noise (2.4000000000000004) off the machine-read line
    print(json.dumps(summary))
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    """Validate dbt_like_models/ (check) or write the analysts' data dictionary (docs)."""
    from tiktok_pipelines.dbt_like import ModelError
    from tiktok_pipelines.defs.dbt_like.external import load_models, models_dir

    root = Path(args.models_dir) if args.models_dir else models_dir()
    try:
        project = load_models(root)
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary: dict[str, object] = {"models": len(project.models), "seeds": len(project.seeds),
                                  "tests": sum(len(m.tests) for m in project.models.values())}
    if args.action == "docs":
        out = Path(args.out) if args.out else root.parent / "docs" / "data_dictionary.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(project.data_dictionary(), encoding="utf-8")
        summary["out"] = str(out)
    print(json.dumps(summary))
    return 0


def _cmd_tagging(args: argparse.Namespace) -> int:
    import tempfile

    from tiktok_pipelines.tagging.evaluate import (
        evaluate_files,
        report_lines,
        split_captions_csv,
    )

    if args.tagging_command == "split":
        print(json.dumps(split_captions_csv(args.kuairec_file, args.out, args.test_fraction)))
        return 0
    if args.train and args.test:
        result = evaluate_files(args.train, args.test)
    elif args.kuairec_file and not (args.train or args.test):
        with tempfile.TemporaryDirectory(prefix="tagging-split-") as tmp:  # the split, then evaluate
            split = split_captions_csv(args.kuairec_file, tmp, args.test_fraction)
            result = evaluate_files(split["train"], split["test"])
    else:
        print("give --train FILE --test FILE, or --kuairec-file FILE to split by video id", file=sys.stderr)
        return 2
    for line in report_lines(result):
        print(line)
    keys = ("accuracy", "macro_f1", "majority_accuracy", "rules_accuracy", "baseline_accuracy", "test_videos")
    print(json.dumps({k: result[k] for k in keys}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tiktok-pipelines", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    # the world's options have no default here: one left out takes SimulationConfig's
    s = sub.add_parser("simulate", help="write a simulated platform's landing files, catalog and truth")
    s.add_argument("--out", default=settings.value("TIKTOK_DATA_DIR"))
    s.add_argument("--seed", type=int)
    s.add_argument("--users", type=int)
    s.add_argument("--videos", type=int)
    s.add_argument("--days", type=int)
    s.add_argument("--events-per-day", type=int)
    s.add_argument("--start-date", help="the world's day 0 (YYYY-MM-DD)")
    s.add_argument("--first-day", default="0",
                   help="first day to simulate, counted from --start-date; 'next' continues the world in --out")
    s.add_argument("--kuairec", default=str(DEFAULT_KUAIREC),
                   help="KuaiRec folder for the real catalog ('none' to generate captions)")
    s.add_argument("--batch-minutes", type=int)
    s.add_argument("--dirty-rate", type=float)
    s.add_argument("--late-rate", type=float)
    s.set_defaults(func=_cmd_simulate)

    i = sub.add_parser("ingest", help="ingest every pending landing file (no Dagster)")
    i.add_argument("--data-dir", default=settings.value("TIKTOK_DATA_DIR"))
    i.add_argument("--lake", default=settings.value("TIKTOK_LAKE_URI"),
                   help="the lake's location: a folder or s3://bucket/prefix (default: TIKTOK_LAKE_URI, "
                   "else <data-dir>/lake); S3 endpoint and credentials from the AWS environment")
    i.add_argument("--future-skew-seconds", type=int, default=settings.value("TIKTOK_FUTURE_SKEW_SECONDS"))
    i.add_argument("--max-lateness-days", type=int, default=settings.value("TIKTOK_MAX_LATENESS_DAYS"))
    i.set_defaults(func=_cmd_ingest)

    r = sub.add_parser("run", help="execute a Dagster job in-process (default: build_all)")
    r.add_argument("job", nargs="?", default="build_all")
    r.add_argument("--verbose", "-v", action="store_true",
                   help="dagster's DEBUG event stream instead of one line per step")
    r.set_defaults(func=_cmd_run)

    v = sub.add_parser("serve", help="serve recommendations from data/serving, hot-reloading new versions")
    v.add_argument("--data-dir", default=settings.value("TIKTOK_DATA_DIR"))
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--reload-interval", type=float, default=1.0, help="seconds between checks for new versions")
    v.add_argument("--serving", default=settings.value("TIKTOK_SERVING_URI"),
                   help="where the versions are: a folder or s3://bucket/prefix (endpoint and region from "
                        "AWS_ENDPOINT_URL / AWS_REGION; default TIKTOK_SERVING_URI, else <data-dir>/serving)")
    v.add_argument("--lake", default=settings.value("TIKTOK_LAKE_URI"),
                   help="where the online counters are: the lake's folder or s3://bucket/prefix "
                        "(default TIKTOK_LAKE_URI, else <data-dir>/lake)")
    v.set_defaults(func=_cmd_serve)

    e = sub.add_parser("experiment", help="Monolith's experiments on the lake's examples: (a) batch vs "
                       "online sync intervals, (b) collisionless vs hashing trick at equal memory")
    e.add_argument("--data-dir", default=settings.value("TIKTOK_DATA_DIR"))
    e.add_argument("--train-days", type=int, default=5)
    e.add_argument("--negative-rate", type=float, default=0.5)
    e.add_argument("--dim", type=int, default=16)
    e.add_argument("--movielens", default=None, help="a MovieLens-100K or ml-latest-small directory "
                   "(format detected from its files) instead of the simulator's examples")
    e.add_argument("--train-fraction", type=float, default=0.8, help="MovieLens: time-ordered split")
    e.add_argument("--sync-interval", type=int, action="append", default=None,
                   help="MovieLens: an online arm's sync interval in seconds; repeat for several "
                   "(default 86400, 3600 and 900); auc_online is the shortest")
    e.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1; every figure is their mean (and std)")
    e.add_argument("--closed-loop-days", type=int, default=4,
                   help="(d): days the model serves the simulated users after a 3-day warm-up (0 skips it)")
    e.set_defaults(func=_cmd_experiment)

    at = sub.add_parser("attribution", help="per-channel credits (first, last, linear, position, Markov, "
                        "Shapley) from a ChannelAttribution path file")
    at.add_argument("--paths", required=True,
                    help="path;total_conversions;total_conversion_value;total_null, header first, '>' between touches")
    at.add_argument("--out", default=None, help="write the per-channel credits (conversions and value) as CSV")
    at.set_defaults(func=_cmd_attribution)

    mo = sub.add_parser("models", help="dbt_like_models/: validate them (check) or write the data dictionary (docs)")
    mo.add_argument("action", choices=["check", "docs"])
    mo.add_argument("--models-dir", default=None, help="default: dbt_like_models/ ($TIKTOK_MODELS_DIR)")
    mo.add_argument("--out", default=None, help="docs: where to write (default: docs/data_dictionary.md)")
    mo.set_defaults(func=_cmd_models)
    tg = sub.add_parser("tagging", help="content tagging: evaluate the category classifier against its baselines")
    tgs = tg.add_subparsers(dest="tagging_command", required=True)
    kf = str(DEFAULT_KUAIREC / "video_captions.csv")
    te = tgs.add_parser("evaluate", help="train on one video_captions.csv-format file, evaluate on another")
    te.add_argument("--train", help="labelled videos to learn from")
    te.add_argument("--test", help="labelled videos to score")
    te.add_argument("--kuairec-file", help=f"instead of --train/--test: split this file by video id (e.g. {kf})")
    te.add_argument("--test-fraction", type=float, default=0.2)
    te.set_defaults(func=_cmd_tagging)
    ts = tgs.add_parser("split", help="split a video_captions.csv-format file by video id into train.csv/test.csv")
    ts.add_argument("--kuairec-file", default=kf)
    ts.add_argument("--out", required=True, help="directory for train.csv and test.csv")
    ts.add_argument("--test-fraction", type=float, default=0.2)
    ts.set_defaults(func=_cmd_tagging)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
