"""Freshness: from a micro-batch landing to the model server serving a model trained on it.

    python benchmarks/freshness.py [--rounds 12] [--events-per-day 60000]

Setup (not timed): a simulated world's first two days are ingested, labelled and trained on by
the daily batch retrain, whose champion is published to the serving directory; a model server
(``ModelServer`` with its reload thread, polling every second) serves it. The third day is
simulated into a staging folder.

Each round (timed): the next flush of every stream is renamed into the landing zone (t0, as a
collector publishes). Then the Dagster sensors drive the pipeline, each tick evaluated on a real
instance the way the daemon would: ``landing_sensor`` requests an ingest run, which executes;
``online_update_sensor`` sees the commit and requests an online update, which trains on the
impressions whose label window this arrival closed and publishes a delta. The round ends when
the running server has swapped in that delta (t1). Freshness = t1 - t0. The label window itself
(30 minutes of event time) is not included: replayed event time advances one flush per round.

``--daemon``: the same rounds under a real ``dagster-daemon`` (what ``dagster dev`` runs), with
the repo's instance settings (``dagster.yaml``: queued run coordinator, dequeue every second).
Nothing is driven by hand: the daemon ticks the sensors, queues and launches the runs (each in a
process of its own, as in production). Between rounds the benchmark waits until no run is queued
or running and the server serves the newest version, so each round's clock starts on an idle
system. A round ends when the server serves a version whose ``trained_through_ms`` moved past the
previous round's: only this round's arrival can have moved the streaming joiner's watermark.
Sensor interval, queue, run start and the server's reload poll are all in the figure.

Last line, one JSON object: {"p50_s", "p95_s", "events", "mode", "rounds", ...}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import numpy as np

from tiktok_pipelines.defs.ingest.assets import ingest_job, ingest_landing
from tiktok_pipelines.defs.ingest.sensors import landing_sensor
from tiktok_pipelines.defs.resources import IngestPolicy, JoinerPolicy, PlatformStorage, TrainingPolicy
from tiktok_pipelines.defs.training.assets import (
    batch_rankers,
    online_ranker,
    online_update_job,
    training_examples,
)
from tiktok_pipelines.defs.training.sensors import online_update_sensor
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.serving.server import ModelServer
from tiktok_pipelines.simulator import simulate
from tiktok_pipelines.training.online import watermark_ms

FLUSH_RE = re.compile(r"-(\d{8}T\d{6})Z-")
REPO = Path(__file__).resolve().parents[1]


def _tick(sensor, defs, instance, cursor):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources=defs.resources)
    result = sensor.evaluate_tick(ctx)
    return result.run_requests or [], result.cursor


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--events-per-day", type=int, default=60_000)
    p.add_argument("--workdir", default=None)
    p.add_argument("--daemon", action="store_true",
                   help="drive the rounds with a real dagster-daemon instead of ticking sensors in process")
    p.add_argument("--round-timeout-s", type=float, default=180.0)
    p.add_argument("--out-dir", default=None,
                   help="also write freshness.json (every latency) and freshness.png here (make experiments)")
    args = p.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-fresh-"))
    os.environ.setdefault("DAGSTER_HOME", str(work / "dagster_home"))
    try:
        staging = work / "staging"
        common = dict(seed=21, users=2_000, videos=4_000, events_per_day=args.events_per_day,
                      start_date="2026-11-01", kuairec_dir=None, write_truth=False)
        simulate(work, days=2, **common)
        simulate(staging, days=3, **common)  # day 3 of the same world, replayed flush by flush
        day3 = [f for f in list_landing_files(staging / "landing") if "/dt=2026-11-03/" in f.rel_path]
        flushes: dict[str, list] = {}
        for f in day3:
            flushes.setdefault(FLUSH_RE.search(f.rel_path).group(1), []).append(f)
        order = sorted(flushes)

        resources = {"storage": PlatformStorage(data_dir=str(work)), "ingest_policy": IngestPolicy(),
                     "joiner_policy": JoinerPolicy(), "training_policy": TrainingPolicy(lgbm_rounds=30)}
        defs = dg.Definitions(assets=[ingest_landing, training_examples, batch_rankers, online_ranker],
                              jobs=[ingest_job, online_update_job], sensors=[landing_sensor, online_update_sensor],
                              resources=resources)
        if args.daemon:
            home = Path(os.environ["DAGSTER_HOME"])
            home.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")  # what `make dagster-home` does
        with (dg.DagsterInstance.get() if args.daemon else dg.instance_for_test()) as instance:
            setup = dg.materialize([ingest_landing, training_examples, batch_rankers], resources=resources,
                                   instance=instance)
            assert setup.success
            # Catch up once, untimed: the batch model stops at day 1's end, the online path
            # brings it to the watermark of what setup ingested.
            assert defs.resolve_job_def("online_update_job").execute_in_process(instance=instance).success
            mark = watermark_ms(work / "lake")
            order = [k for k in order
                     if dt.datetime.strptime(k, "%Y%m%dT%H%M%S").replace(tzinfo=dt.timezone.utc).timestamp() * 1000 > mark]
            server = ModelServer(work / "serving", catalog_dir=work / "catalog", reload_interval_s=1.0)
            server.start()
            if args.daemon:
                latencies, events, timeouts = _daemon_rounds(args, work, staging, flushes, order, instance, server)
                server.stop()
                return _report(args, latencies, events, mode="daemon", timeouts=timeouts)
            _, land_cursor = _tick(landing_sensor, defs, instance, None)
            _, online_cursor = _tick(online_update_sensor, defs, instance, None)
            latencies, events = [], 0
            for key in order[: args.rounds]:
                t0 = time.perf_counter()
                for f in flushes[key]:  # the collector publishes this flush of every stream
                    dst = work / "landing" / f.rel_path
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    # a fresh mtime, as a file that just arrived (the landing sensor orders by it)
                    shutil.copyfile(staging / "landing" / f.rel_path, dst.with_name(dst.name + ".tmp"))
                    os.rename(dst.with_name(dst.name + ".tmp"), dst)
                    events += sum(1 for _ in open(dst, "rb"))
                requests, land_cursor = _tick(landing_sensor, defs, instance, land_cursor)
                for rr in requests:
                    assert defs.resolve_job_def("ingest_job").execute_in_process(
                        instance=instance, run_config=rr.run_config, tags=rr.tags).success
                requests, online_cursor = _tick(online_update_sensor, defs, instance, online_cursor)
                target = None
                for _ in requests:
                    result = defs.resolve_job_def("online_update_job").execute_in_process(instance=instance)
                    assert result.success
                    mats = result.asset_materializations_for_node("online_ranker")
                    if mats:
                        target = mats[0].metadata["serving_seq"].value
                if target is None:
                    print(f"round {key}: no label window closed yet", file=sys.stderr)
                    continue
                while server.state.seq < target:
                    time.sleep(0.01)
                latencies.append(time.perf_counter() - t0)
                print(f"round {key}: delta seq {target} served after {latencies[-1]:.2f}s", file=sys.stderr)
            server.stop()
        return _report(args, latencies, events, mode="in_process", timeouts=0)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


def _report(args, latencies: list[float], events: int, *, mode: str, timeouts: int) -> int:
    lat = np.array(latencies)
    if args.out_dir and lat.size:
        from tiktok_pipelines.experiments.plots import plot_freshness
        from tiktok_pipelines.lake import atomic_write_json

        out_dir = Path(args.out_dir)
        atomic_write_json(out_dir / "freshness.json", {"latencies_s": [round(x, 3) for x in latencies],
                                                       "p50_s": float(np.percentile(lat, 50)),
                                                       "p95_s": float(np.percentile(lat, 95)), "events": events})
        plot_freshness(latencies, out_dir / "freshness.png")
    print(json.dumps({
        "p50_s": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
        "p95_s": round(float(np.percentile(lat, 95)), 2) if lat.size else None,
        "events": events, "rounds": int(lat.size), "max_s": round(float(lat.max()), 2) if lat.size else None,
        "timeouts": timeouts, "reload_poll_s": 1.0,
        "driven_by": ("dagster-daemon: sensors, queued run coordinator, one process per run" if mode == "daemon"
                      else "landing_sensor + online_update_sensor ticks, runs in process"),
        "mode": mode,
    }))
    return 0 if lat.size else 1


_BUSY = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
         dg.DagsterRunStatus.STARTED]


def _settle(instance, server, serving: Path, quiet_s: float = 3.0, timeout_s: float = 300.0) -> None:
    """Wait until no run is queued or running, and the server serves the newest version, for quiet_s."""
    from tiktok_pipelines.serving.store import list_versions

    deadline, quiet_since = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        versions = list_versions(serving)
        idle = (instance.get_runs_count(dg.RunsFilter(statuses=_BUSY)) == 0
                and server.state is not None and versions and server.state.seq == versions[-1])
        if not idle:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return
        time.sleep(0.25)
    raise TimeoutError("the daemon's runs did not settle")


def _online_done_without_publishing(instance, since: dt.datetime, serving: Path, versions_before: list[int]) -> bool:
    """An online update launched after ``since`` succeeded, nothing is queued or running, and no
    version was published since the round began."""
    from tiktok_pipelines.serving.store import list_versions

    if instance.get_runs_count(dg.RunsFilter(statuses=_BUSY)):
        return False
    done = instance.get_runs_count(dg.RunsFilter(job_name="online_update_job", created_after=since,
                                                 statuses=[dg.DagsterRunStatus.SUCCESS]))
    return bool(done) and list_versions(serving) == versions_before


def _daemon_rounds(args, work: Path, staging: Path, flushes: dict, order: list[str], instance, server):
    import signal
    import subprocess

    from tiktok_pipelines.serving.store import list_versions

    env = {**os.environ, "TIKTOK_DATA_DIR": str(work), "DAGSTER_HOME": os.environ["DAGSTER_HOME"]}
    log = open(work / "daemon.log", "wb")
    # Its own process group: the daemon's children (code server, run workers) go with it at the end.
    daemon = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                              cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    latencies, events, timeouts = [], 0, 0
    try:
        # The sensors' first ticks (fresh cursors) find what setup already did: let them settle.
        time.sleep(10)
        _settle(instance, server, work / "serving")
        for key in order[: args.rounds]:
            if daemon.poll() is not None:
                raise RuntimeError(f"dagster-daemon exited ({daemon.returncode}): see {work / 'daemon.log'}")
            before = int(server.state.metadata.get("trained_through_ms", 0))
            versions_before = list_versions(work / "serving")
            started = dt.datetime.now(dt.timezone.utc)
            t0 = time.perf_counter()
            for f in flushes[key]:
                dst = work / "landing" / f.rel_path
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(staging / "landing" / f.rel_path, dst.with_name(dst.name + ".tmp"))
                os.rename(dst.with_name(dst.name + ".tmp"), dst)
                events += sum(1 for _ in open(dst, "rb"))
            while time.perf_counter() - t0 < args.round_timeout_s:
                st = server.state
                if int(st.metadata.get("trained_through_ms", 0)) > before:
                    latencies.append(time.perf_counter() - t0)
                    print(f"round {key}: seq {st.seq} served after {latencies[-1]:.2f}s", file=sys.stderr)
                    break
                if _online_done_without_publishing(instance, started, work / "serving", versions_before):
                    # a quiet quarter of an hour (night): no impression's window closed with it
                    print(f"round {key}: no label window closed, nothing to publish", file=sys.stderr)
                    break
                time.sleep(0.05)
            else:
                timeouts += 1
                print(f"round {key}: nothing newer served in {args.round_timeout_s:.0f}s", file=sys.stderr)
            _settle(instance, server, work / "serving")
    finally:
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait(timeout=60)
        log.close()
    return latencies, events, timeouts


if __name__ == "__main__":
    raise SystemExit(main())
