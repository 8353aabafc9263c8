"""How long a job launched the way `dagster dev` launches it takes, against the work its steps hold.

In a temp dir with its own DAGSTER_HOME (a copy of the repo's dagster.yaml: queued run coordinator,
pools) this starts `dagster dev -w workspace.yaml` (webserver, dagster-daemon, code server), stops
the location's sensors and schedules (so that only the runs launched here run), simulates a small
world with the CLI (as `make simulate` does), then launches through the webserver's GraphQL
`launchRun`, exactly as the UI's buttons do, one after the other:

- ``ingest_job`` (landing -> lake),
- the catalog's dims and ``video_tags`` (what the SQL models read besides the lake; setup, not timed),
- ``hourly_analytics_job`` (the scheduled one: seeds, staging, marts, analytics_db),
- a one-asset materialisation of a seed (the UI's "Materialize" on ``seeds/revenue_shares``).

Each run goes through the queue, the daemon's dequeue, a run worker and its steps. From the run's
record and event log: wall = launchRun sent -> the run's end; work = the sum over steps of STEP_START -> the
step's end (success, failure or retry). Target: wall <= 1.5 x work + 15 s for each.

``--executor multiprocess`` loads the same defs folder without the location's executor (Dagster's
default: a process per step), the state before issue 17; ``--executor forkserver`` with Dagster's
multiprocess executor started from a forkserver that preloaded the code location (never plain fork:
delta-rs's tokio runtime does not survive it). Both for comparison only.

Last line: one JSON object. ``make bench-jobs``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCATION = "tiktok_pipelines"  # workspace.yaml's location_name
REPOSITORY = "__repository__"
SEED = ["seeds", "revenue_shares"]

# The alternatives measured against the location's executor: the defs folder as `definitions.py`
# loads it, with Dagster's default executor (the state before issue 17) or a forkserver one.
ALTERNATIVE_DEFS = '''
import pkgutil
from pathlib import Path
import dagster as dg
import tiktok_pipelines.defs
import tiktok_pipelines.definitions as location

# every module the defs folder loads, imported once in the forkserver, inherited by each step
PRELOAD = ["tiktok_pipelines.definitions"] + [m.name for m in pkgutil.walk_packages(
    tiktok_pipelines.defs.__path__, "tiktok_pipelines.defs.")]
EXECUTORS = {{
    "multiprocess": None,
    "forkserver": dg.multiprocess_executor.configured(
        {{"start_method": {{"forkserver": {{"preload_modules": PRELOAD}}}}}}),
}}

@dg.definitions
def defs():
    loaded = dg.load_from_defs_folder(path_within_project=Path(location.__file__).parent)
    executor = EXECUTORS["{executor}"]
    return dg.Definitions.merge(loaded, dg.Definitions(executor=executor)) if executor else loaded
'''

LAUNCH = """
mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId } }
  ... on PythonError { message stack }
  ... on InvalidSubsetError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }
"""
STATUS = "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }"
INSTIGATORS = """
query($r: RepositorySelector!) {
  sensorsOrError(repositorySelector: $r) { ... on Sensors { results { id name sensorState { status } } } }
  schedulesOrError(repositorySelector: $r) { ... on Schedules { results { id name scheduleState { status } } } }
}
"""
STEP_ENDS = ("STEP_SUCCESS", "STEP_FAILURE", "STEP_UP_FOR_RETRY")


def _graphql(url: str, query: str, **variables) -> dict:
    body = json.dumps({"query": query, "variables": variables}).encode()
    req = urllib.request.Request(f"{url}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        out = json.loads(resp.read())
    if "errors" in out:
        raise RuntimeError(out["errors"])
    return out["data"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_location(url: str, proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    query = ("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
             "locationOrLoadError { __typename ... on PythonError { message } } } } } }")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster dev exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            entries = _graphql(url, query)["workspaceOrError"]["locationEntries"]
        except OSError:
            entries = []
        for entry in entries:
            loaded = entry["locationOrLoadError"] or {}
            if entry["name"] == LOCATION and loaded.get("__typename") == "PythonError":
                raise RuntimeError(f"the code location failed to load: {loaded['message']}")
            if entry["name"] == LOCATION and entry["loadStatus"] == "LOADED" and loaded:
                return
        time.sleep(1)
    raise TimeoutError(f"dagster dev did not load {LOCATION} in {timeout:.0f}s")


def _stop_instigators(url: str) -> list[str]:
    """Stop every sensor and schedule: only the runs launched here may use the queue and the pools."""
    repo = {"repositoryName": REPOSITORY, "repositoryLocationName": LOCATION}
    stopped: list[str] = []
    for _ in range(10):  # a stop can race the daemon's first tick of a default-running sensor: again
        data = _graphql(url, INSTIGATORS, r=repo)
        running = [("stopSensor", s) for s in data["sensorsOrError"]["results"]
                   if s["sensorState"]["status"] == "RUNNING"]
        running += [("stopRunningSchedule", s) for s in data["schedulesOrError"]["results"]
                    if s["scheduleState"]["status"] == "RUNNING"]
        if not running:
            return stopped
        for mutation, s in running:
            try:
                _graphql(url, f"mutation($id: String) {{ {mutation}(id: $id) {{ __typename }} }}", id=s["id"])
            except urllib.error.HTTPError as e:  # the same race, seen as a 500: the next pass retries
                print(f"stopping {s['name']}: {e}; again", file=sys.stderr)
                continue
            stopped.append(s["name"])
        time.sleep(1)
    raise RuntimeError(f"still running after stop: {[s['name'] for _, s in running]}")


def _launch(url: str, job: str, assets: list[list[str]] | None = None) -> str:
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job}
    if assets:
        selector["assetSelection"] = [{"path": a} for a in assets]
    out = _graphql(url, LAUNCH, p={"selector": selector, "runConfigData": {}, "mode": "default"})["launchRun"]
    if out["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"launchRun {job}: {out}")
    return out["run"]["runId"]


def _wait(url: str, run_id: str, proc: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster dev exited ({proc.returncode}) during run {run_id}")
        status = _graphql(url, STATUS, id=run_id)["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(0.5)
    raise TimeoutError(f"run {run_id} did not finish in {timeout:.0f}s")


def _timings(instance, run_id: str, submitted: float) -> dict:
    """Wall (launchRun sent -> end) and work (sum of step start -> step end) from the run's record and events."""
    from dagster import DagsterEventType

    record = instance.get_run_record_by_id(run_id)
    created = record.create_timestamp.timestamp()
    enqueued = next(iter(instance.all_logs(run_id, of_type=DagsterEventType.PIPELINE_ENQUEUED)), None)
    types = {DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE,
             DagsterEventType.STEP_UP_FOR_RETRY}
    events = [e for e in instance.all_logs(run_id) if e.is_dagster_event and e.dagster_event_type in types]
    open_steps: dict[str, float] = {}
    work, steps, first_start, last_end = 0.0, 0, None, None
    for e in sorted(events, key=lambda e: e.timestamp):
        key = e.dagster_event.step_key
        if e.dagster_event_type == DagsterEventType.STEP_START:
            open_steps[key] = e.timestamp
            first_start = e.timestamp if first_start is None else first_start
        elif key in open_steps:
            work += e.timestamp - open_steps.pop(key)
            steps += 1
            last_end = e.timestamp
    return {
        "run_id": run_id,
        "status": record.dagster_run.status.value,
        "steps": steps,
        "wall_s": round(record.end_time - min(submitted, created), 2),
        "work_s": round(work, 2),
        # where the rest goes: launchRun -> the run queued (the webserver builds the plan, creates
        # the run and writes one planned event per asset and per check), -> RUN_START (the daemon's
        # dequeue, the run worker's process and its import of the code location), -> the first
        # step; after the last step
        "to_queued_s": round(enqueued.timestamp - min(submitted, created), 2) if enqueued else None,
        "to_run_start_s": round(record.start_time - enqueued.timestamp, 2) if record.start_time and enqueued else None,
        "to_first_step_s": round(first_start - record.start_time, 2) if first_start and record.start_time else None,
        "after_last_step_s": round(record.end_time - last_end, 2) if last_end else None,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=2_000)
    p.add_argument("--videos", type=int, default=4_000)
    p.add_argument("--days", type=int, default=2)
    p.add_argument("--events-per-day", type=int, default=20_000)
    p.add_argument("--run-timeout-s", type=float, default=900)
    p.add_argument("--executor", choices=("location", "multiprocess", "forkserver"), default="location",
                   help="location: the code location's own (what is shipped); multiprocess: Dagster's default "
                   "(a process per step, the state before issue 17); forkserver: multiprocess from a "
                   "forkserver that preloaded the code")
    p.add_argument("--workdir", default=None, help="keep everything here (default: a temp dir, removed)")
    args = p.parse_args()

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    work.mkdir(parents=True, exist_ok=True)
    home, data = work / "dagster_home", work / "data"
    home.mkdir(exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")  # what `make dagster-home` does
    env = {**os.environ, "TIKTOK_DATA_DIR": str(data), "DAGSTER_HOME": str(home), "OMP_NUM_THREADS": "1",
           # this checkout's package, ahead of the editable install's finder (a copy of the repo can
           # then be measured with the same venv)
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    os.environ["DAGSTER_HOME"] = str(home)
    workspace = REPO / "workspace.yaml"
    if args.executor != "location":
        (work / "alternative_defs.py").write_text(ALTERNATIVE_DEFS.format(executor=args.executor))
        workspace = work / "workspace.yaml"
        workspace.write_text("load_from:\n  - python_file:\n      relative_path: alternative_defs.py\n"
                             f"      attribute: defs\n      location_name: {LOCATION}\n"
                             f"      working_directory: {REPO}\n")

    url = f"http://127.0.0.1:{_free_port()}"
    log = work / "dagster_dev.log"
    results: dict[str, dict] = {}
    with open(log, "wb") as out:
        # `make dev`'s command; its own process group, killed whole at the end (dagster dev leaves
        # its children to the group on SIGTERM).
        proc = subprocess.Popen([str(BIN / "dagster"), "dev", "-w", str(workspace), "-h", "127.0.0.1",
                                 "-p", url.rsplit(":", 1)[1]],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        t0 = time.perf_counter()
        _wait_for_location(url, proc, log)
        stopped = _stop_instigators(url)
        print(f"dagster dev up in {time.perf_counter() - t0:.1f}s; stopped {', '.join(sorted(set(stopped)))}", file=sys.stderr)
        subprocess.run([str(BIN / "tiktok-pipelines"), "simulate", "--out", str(data), "--users", str(args.users),
                        "--videos", str(args.videos), "--days", str(args.days),
                        "--events-per-day", str(args.events_per_day)],
                       cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)

        import dagster as dg

        with dg.DagsterInstance.get() as instance:
            from tiktok_pipelines.schemas import CATALOG

            setup = [["dim_" + n] for n in CATALOG] + [["video_tags"]]
            plan = [("ingest", "ingest_job", None), ("setup", "__ASSET_JOB", setup),
                    ("hourly_analytics", "hourly_analytics_job", None), ("single_asset", "__ASSET_JOB", [SEED])]
            for name, job, assets in plan:
                submitted = time.time()
                run_id = _launch(url, job, assets)
                status = _wait(url, run_id, proc, args.run_timeout_s)
                results[name] = _timings(instance, run_id, submitted)
                print(f"{name}: {json.dumps(results[name])}", file=sys.stderr)
                if status != "SUCCESS":
                    raise RuntimeError(f"{name} ({job}) ended {status}: see {log} and run {run_id}")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    timed = ("hourly_analytics", "ingest", "single_asset")
    summary = {}
    for name in timed:
        summary[f"{name}_s"] = results[name]["wall_s"]
        summary[f"{name}_work_s"] = results[name]["work_s"]
    summary["target_met"] = all(results[n]["wall_s"] <= 1.5 * results[n]["work_s"] + 15 for n in timed)
    summary["executor"] = args.executor
    summary["overhead"] = {n: {k: results[n][k] for k in ("steps", "to_queued_s", "to_run_start_s", "to_first_step_s", "after_last_step_s")}
                           for n in timed}
    print(json.dumps(summary))
    return 0 if summary["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
