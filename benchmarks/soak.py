"""Soak: the whole platform under a steady stream for minutes, then an exactly-once audit.

    python benchmarks/soak.py [--minutes 5] [--events-per-day 20000] [--users 2000] [--videos 4000]

Everything runs at once, as in production, each part in its own OS process:

- the **streamer** (``--role stream``) generates a simulated world's days into a staging folder
  (the next day in the background) and releases their landing files into the landing zone in
  flush order, one flush every ``day_seconds / flushes`` seconds, by rename as a collector
  publishes; it logs every release (flush, time, lines);
- **dagster-daemon** (``dagster-daemon run -f benchmarks/soak_defs.py`` on a DAGSTER_HOME with the
  repo's ``dagster.yaml``: queued run coordinator, one slot per pool, 4 runs at once): its
  ``landing_sensor`` requests ingest runs, its ``online_update_sensor`` online updates that
  publish deltas, and ``analytics_republish_sensor`` republishes the analysts' copy
  (``warehouse_lake_tables`` + ``analytics_db``) every ``--publish-every`` seconds; every run
  executes in a run worker process of its own, as in production. With ``--in-process`` this
  process ticks the same sensors and executes their runs itself instead (freshness.py's way:
  no process start per run; CI's short soak);
- the **model server** (``tiktok-pipelines serve``: uvicorn, hot-reloading the serving dir every
  second) answers real HTTP and logs what it served back into the landing zone as impressions,
  so the sensors ingest those too (the loop closes);
- a **client** (``--role client``) calls ``/recommend`` for known and unknown users, ``/healthz``
  and a malformed request (must be a 4xx) in a loop, counting responses by status and the items
  it received (each one is an impression the server logged);
- an **analyst** (``--role analyst``) opens ``analytics.duckdb`` read-only in a loop and runs
  queries from ``sql/examples/``, counting queries, failures and how often the published file
  had been swapped under it between two rounds (its inode changed; a freed inode number can be
  reused by a later publish, so distinct inodes would undercount).

- **hostile inputs** (``--hostile-every``, default 60 s): the driver plants one of issue 15's
  hostile inputs in turn (``HOSTILE_KINDS``): landing files dated 2099 or 9999, empty, with an
  impossible date or ``..`` in the name, which the ingest must quarantine as files while the rest
  of their batch commits; a bogus newest serving version and one symlinked from outside, which the
  server must refuse (serving the newest good version, /healthz saying "degraded") and the next
  publication set aside. The client counts answers without items: there must be none.

Warm-up (before the timed part, in this process on the same instance): the first two simulated
days are released at once and ingested by the sensor's runs, the catalog is loaded, the daily batch retrain (``daily_training_job``)
publishes the first full model, one online update catches up, analytics.duckdb is published;
then the server, (the daemon,) client, analyst and streamer start. After ``--minutes``: streamer,
client, analyst and server stop (the server flushes its impression log), the sensor's runs drain
the landing zone (under the daemon: until no run is queued or running, then it stops), and one
ingest run with no file list catches whatever a high-water-mark tick could have passed over (a
file renamed in with an older arrival than one already seen). Then the audit:

- events produced (streamer's lines + items the server returned to the client) = lines in the
  landing zone = rows_read in the ingest log = lake + quarantine + duplicates, per file and in
  total, recounted from the tables' committed snapshots (the files their Delta logs name); every
  landing file ingested once; every
  event_id once in the lake;
- runs requested = runs succeeded on the instance (read back from its run storage and event logs,
  which is also where the ingest commit times and the updates' serving seqs come from); no asset
  check failed;
- analyst queries > 0 with 0 failures; client requests > 0 with 0 5xx and 0 connection errors;
  deltas published > 0;
- freshness p50/p95: from a flush's release (t0) to the server serving the first delta from an
  online update that started after the flush's ingest committed (``freshness.py``'s measure,
  with the rounds overlapping instead of one at a time).

The simulated world is dated a year ahead of the wall clock: the server's impressions carry wall
clock times, and the online watermark (the newest flush time ingested) must follow the replayed
event time, not jump to today and close every label window at once.

Last line, one JSON object; exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ANALYST_QUERIES = ("daily_watch_time.sql", "ingest_health.sql", "quarantine_reasons.sql")
WARM_DAYS = 2  # the batch retrain trains on all days but the last and evaluates on the last


class _Stop:
    """SIGTERM sets a flag; loops finish what they are doing (a request, a query, a flush) and exit."""

    def __init__(self) -> None:
        self.set = False
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, *_):
        self.set = True

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.set and (left := end - time.monotonic()) > 0:
            time.sleep(min(0.05, left))


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def publish_landing_file(src: Path, dst: Path) -> None:
    """As a collector publishes: write a hidden temp file in the target directory, rename it in.
    The copy gives it a fresh mtime, the landing sensor's high-water mark."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.soak.tmp"
    shutil.copyfile(src, tmp)
    os.rename(tmp, dst)


def _flush_groups(files) -> dict[int, list]:
    """Landing files by flush time (parsed from their names), oldest flush first."""
    groups: dict[int, list] = defaultdict(list)
    for f in files:
        groups[f.flushed_at_ms].append(f)
    return dict(sorted(groups.items()))


def release_flush(staging: Path, landing: Path, files, log) -> int:
    """Publish one flush (a file per stream) and log it; returns the lines released."""
    from tiktok_pipelines.ingest.engine import count_records

    t0 = time.time()
    out = []
    for f in files:
        dst = landing / f.rel_path
        publish_landing_file(staging / f.rel_path, dst)
        out.append([f.rel_path, count_records(dst)])
    log.write(json.dumps({"t0": t0, "files": out}) + "\n")
    log.flush()
    return sum(n for _, n in out)


# ------------------------------------------------------------------------------------ hostile

# What the outside review threw at the platform (issue 15), one kind per planting, in turn: landing
# files the ingest must quarantine as files (the rest of their batch committing), and serving
# versions the server must refuse (serving the newest good one) and the writer set aside.
HOSTILE_KINDS = ("future_2099", "empty", "impossible_date", "dotdot_name", "year_9999",
                 "bogus_version", "symlinked_version")


def plant_hostile(kind: str, n: int, work: Path, world_start: str) -> dict:
    """Plant one hostile input; returns what was planted (landing lines count as produced events)."""
    from tiktok_pipelines.serving.store import list_versions, version_dir, writer_lock

    landing, serving = work / "landing", work / "serving"
    day = world_start.replace("-", "")
    ts = int(dt.datetime.fromisoformat(world_start).replace(tzinfo=dt.timezone.utc).timestamp() * 1000) + 43_200_000

    def event(i: int, ts_ms: int) -> str:
        return json.dumps({"event_id": f"hostile-{n}-{i}", "ts_ms": ts_ms, "user_id": 1, "video_id": 1,
                           "creator_id": 1, "watch_time_ms": 1000, "video_duration_ms": 10_000})

    landing_kinds = {
        "future_2099": (f"views/dt=2099-12-31/views-20991231T000000Z-{900000 + n}.ndjson", [event(0, 4_102_358_400_000)]),
        "empty": (f"views/dt={world_start}/views-{day}T120000Z-{900000 + n}.ndjson", []),
        "impossible_date": (f"views/dt={world_start}/views-{day[:4]}1399T120000Z-{900000 + n}.ndjson", [event(0, ts)]),
        "dotdot_name": (f"views/dt={world_start}/x\\..\\hostile-{n}.ndjson", [event(0, ts), "garbage"]),
        "year_9999": (f"views/dt={world_start}/views-99991231T235959Z-{900000 + n}.ndjson",
                      [event(0, 253_402_300_000_000)]),
    }
    if kind in landing_kinds:
        rel, lines = landing_kinds[kind]
        dst = landing / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.parent / f".hostile-{n}.tmp"
        tmp.write_text("".join(line + "\n" for line in lines))
        os.rename(tmp, dst)  # published as a collector publishes
        return {"kind": kind, "landing": rel, "lines": len(lines)}
    # Serving versions, planted under the writer lock: what is tested is how readers and the next
    # publication treat a bad newest version, not a race with a rename of the same name.
    with writer_lock(serving):
        seq = (list_versions(serving) or [0])[-1] + 1
        d = version_dir(serving, seq)
        if kind == "bogus_version":
            d.mkdir()
            (d / "manifest.json").write_text(json.dumps({"format": "tiktok_pipelines.serving/v1", "seq": seq}) + "\n")
        else:  # a valid version of this very directory, copied outside and linked back in
            outside = work / "elsewhere" / f"v{seq:08d}"
            shutil.copytree(version_dir(serving, seq - 1), outside, symlinks=False)
            manifest = json.loads((outside / "manifest.json").read_text())
            manifest["seq"] = seq
            (outside / "manifest.json").write_text(json.dumps(manifest))
            d.symlink_to(outside, target_is_directory=True)
    return {"kind": kind, "serving": d.name, "lines": 0}


# --------------------------------------------------------------------------------------- roles


def role_stream(a) -> int:
    """Generate day after day into staging; release each day's flushes evenly over day_seconds."""
    from concurrent.futures import ThreadPoolExecutor

    from tiktok_pipelines.ingest.landing import list_landing_files
    from tiktok_pipelines.simulator import simulate

    stop = _Stop()
    work = Path(a.work)
    staging, landing = work / "staging", work / "landing"
    world = json.loads(a.world)
    released = {f.rel_path for f in list_landing_files(staging / "landing")}  # the warm-up's
    day, lines, flushes = a.first_day, 0, 0
    with open(work / "stream.jsonl", "a") as log, ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(simulate, staging, first_day=day, days=1, **world)
        while not stop.set:
            pending.result()
            new = [f for f in list_landing_files(staging / "landing") if f.rel_path not in released]
            day += 1
            pending = pool.submit(simulate, staging, first_day=day, days=1, **world)  # the next, meanwhile
            groups = _flush_groups(new)
            step = a.day_seconds / max(1, len(groups))
            next_at = time.monotonic()
            for files in groups.values():
                stop.sleep(next_at - time.monotonic())
                if stop.set:
                    break
                lines += release_flush(staging / "landing", landing, files, log)
                released.update(f.rel_path for f in files)
                flushes += 1
                next_at += step
    print(f"streamer: {flushes} flushes, {lines} lines released, through day {day - 1}", file=sys.stderr)
    return 0


def role_client(a) -> int:
    """Real HTTP against the model server; counts by status, items received, connection errors."""
    stop = _Stop()
    rng = random.Random(7)
    status: Counter = Counter()
    by_kind: Counter = Counter()
    items, errors, err_samples, seqs, empty, degraded = 0, 0, [], set(), 0, 0
    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
    while not stop.set:
        r = rng.random()
        if r < 0.65:
            kind, path = "known", f"/recommend?user_id={rng.randint(1, a.users)}&k=10"
        elif r < 0.85:
            kind, path = "unknown", f"/recommend?user_id={a.users + 1_000_000 + rng.randint(0, 10**6)}&k=10"
        elif r < 0.95:
            kind, path = "healthz", "/healthz"
        else:
            kind, path = "bad", "/recommend?user_id=abc&k=0"  # must be refused with a 4xx
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as e:
            errors += 1
            err_samples = (err_samples + [f"{kind}: {e!r}"])[:5]
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
            stop.sleep(0.2)
            continue
        if kind == "healthz" and resp.status == 503 and json.loads(body).get("status") == "degraded":
            # A hostile version makes the server fall back to the last good one: it says so on
            # /healthz (a 503 for monitors) while /recommend keeps answering. Not a failure.
            degraded += 1
            by_kind["healthz:degraded"] += 1
            stop.sleep(a.interval)
            continue
        status[resp.status] += 1
        by_kind[f"{kind}:{resp.status}"] += 1
        if kind in ("known", "unknown") and resp.status == 200:
            doc = json.loads(body)
            items += len(doc["items"])
            empty += not doc["items"]
            seqs.add(doc["model_seq"])
        stop.sleep(a.interval)
    conn.close()
    _write_json(Path(a.out), {"requests": sum(status.values()), "status": {str(k): v for k, v in status.items()},
                              "by_kind": dict(by_kind), "items": items, "errors": errors,
                              "error_samples": err_samples, "model_seqs_seen": len(seqs),
                              "empty_answers": empty, "healthz_degraded": degraded})
    return 0


def role_analyst(a) -> int:
    """Read-only queries on analytics.duckdb in a loop; the file is swapped under it meanwhile."""
    import duckdb

    stop = _Stop()
    queries = {name: (ROOT / "sql" / "examples" / name).read_text() for name in ANALYST_QUERIES}
    path = Path(a.db)
    n, failures, samples, swaps, last_inode, rows_seen = 0, 0, [], 0, None, 0
    while not stop.set:
        try:
            inode = os.stat(path).st_ino
            swaps += last_inode is not None and inode != last_inode
            last_inode = inode
            # as the README says: raw.* name the lake relative to the file's folder
            con = duckdb.connect(str(path), read_only=True, config={"file_search_path": str(path.absolute().parent)})
            try:
                for name, sql in queries.items():
                    n += 1
                    try:
                        rows = con.sql(sql).fetchall()
                        if name == "ingest_health.sql":
                            rows_seen = max(rows_seen, sum(r[3] for r in rows))  # rows_read so far
                    except Exception as e:  # a failed query is what the soak is looking for
                        failures += 1
                        samples = (samples + [f"{name}: {e!r}"])[:5]
            finally:
                con.close()
        except Exception as e:  # the file could not be opened
            n += 1
            failures += 1
            samples = (samples + [f"connect: {e!r}"])[:5]
        stop.sleep(a.interval)
    _write_json(Path(a.out), {"queries": n, "failures": failures, "failure_samples": samples,
                              "swaps_seen": swaps, "max_rows_read_seen": rows_seen})
    return 0


# -------------------------------------------------------------------------------------- driver


class _ServedWatcher(threading.Thread):
    """Polls /healthz and records when the server first reports each serving seq."""

    def __init__(self, port: int) -> None:
        super().__init__(name="served-watcher", daemon=True)
        self.port = port
        self.first_seen: list[tuple[int, float]] = []  # (seq, wall time), seq increasing
        self.stop = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop.wait(0.05):
            try:
                conn.request("GET", "/healthz")
                seq = json.loads(conn.getresponse().read())["seq"]
            except (OSError, http.client.HTTPException, ValueError):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                continue
            if seq is not None and (not self.first_seen or seq > self.first_seen[-1][0]):
                self.first_seen.append((seq, time.time()))

    def served_at(self, seq: int) -> float | None:
        return next((t for s, t in self.first_seen if s >= seq), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(port: int, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the model server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if json.loads(conn.getresponse().read()).get("model_loaded"):
                return
        except (OSError, http.client.HTTPException, ValueError):
            pass
        time.sleep(0.2)
    raise TimeoutError("the model server did not come up with a model")


def _stop_proc(proc: subprocess.Popen, timeout_s: float = 60) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    import numpy as np

    return round(float(np.percentile(np.array(xs), q)), 2)


def _activity(instance) -> dict:
    """What the runs on the instance did, read back from their event logs (both modes): runs by
    job and status, when each sensor-requested ingest committed which files, when each online
    update's step started and which serving seq it published, and every failed asset check."""
    import dagster as dg

    from tiktok_pipelines.defs.ingest.sensors import files_named_by

    runs = instance.get_runs()
    out = {"by_job": Counter(r.job_name for r in runs), "status": Counter(r.status.value for r in runs),
           "not_succeeded": [f"{r.job_name} {r.run_id} {r.status.value}" for r in runs
                             if r.status != dg.DagsterRunStatus.SUCCESS],
           "ingests": [], "updates": [], "failed_checks": [],
           # ingest runs the landing sensor's sweep asked for: files behind its cursor that no run took
           "sweep_runs": [r.tags.get("landing/first") for r in runs if "landing/sweep" in r.tags]}
    for r in runs:
        events = [e for e in instance.all_logs(r.run_id) if e.dagster_event is not None]
        for e in events:
            ev = e.dagster_event
            if ev.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION and not ev.asset_check_evaluation_data.passed:
                c = ev.asset_check_evaluation_data
                out["failed_checks"].append(f"{c.asset_key.to_user_string()}:{c.check_name} ({r.job_name})")
        mats = [e for e in events if e.dagster_event.is_step_materialization]
        if r.job_name == "ingest_job" and r.status == dg.DagsterRunStatus.SUCCESS:
            files = files_named_by(r.run_config)
            if files and mats:  # a sensor's run (the final catch-up has no file list)
                out["ingests"].append((min(e.timestamp for e in mats), files))
        elif r.job_name == "online_update_job":
            starts = [e.timestamp for e in events if e.dagster_event.is_step_start]
            seqs = [e.dagster_event.step_materialization_data.materialization.metadata["serving_seq"].value
                    for e in mats]
            if starts:
                out["updates"].append((min(starts), seqs[0] if seqs else None))
    out["updates"].sort()
    return out


def _drain_under_daemon(instance, daemon: subprocess.Popen, stop_file: Path, landing: Path, lake: Path,
                        timeout_s: float, say) -> int:
    """After the producers stop: let the daemon's sensor runs ingest every landing file, stop the
    republishing, wait until no run is queued or running for longer than the online sensor's
    interval (its last update then has been requested and done), then stop the daemon."""
    import dagster as dg

    from tiktok_pipelines.ingest.engine import Lake
    from tiktok_pipelines.ingest.landing import list_landing_files

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pending = {f.key for f in list_landing_files(landing)} - Lake(lake).ingested_keys()
        if not pending:
            break
        time.sleep(1)
    else:
        say(f"drain: {len(pending)} landing files still pending after {timeout_s:.0f} s")
    stop_file.touch()
    active = dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
                                     dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED])
    quiet_since = None
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            break
        if instance.get_runs_count(active):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 20:  # the online sensor ticks every 10 s
            break
        time.sleep(1)
    say(f"drain: {instance.get_runs_count(active)} runs active; stopping the daemon")
    return _stop_proc(daemon)


def _daemon_instance_home(work: Path) -> Path:
    """A DAGSTER_HOME with the repo's dagster.yaml: SQLite storage, the queued run coordinator,
    one slot per pool (duckdb_warehouse, online_update), at most 4 runs at once."""
    home = work / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def drive(a, work: Path) -> dict:
    import dagster as dg
    import duckdb
    from freshness import _tick  # the sensor tick as freshness.py evaluates it (benchmarks/ is on sys.path)
    from soak_defs import STOP_PUBLISHING, build_defs

    from tiktok_pipelines.defs.ingest.sensors import landing_sensor
    from tiktok_pipelines.defs.training.sensors import online_update_sensor
    from tiktok_pipelines.ingest.engine import (
        QUARANTINE_DIR,
        Lake,
        count_records,
        events_table,
        lake_row_count,
        table_row_count,
        table_source,
    )
    from tiktok_pipelines.ingest.landing import list_landing_files
    from tiktok_pipelines.schemas import STREAMS
    from tiktok_pipelines.simulator import simulate

    daemon = not a.in_process
    t_begin = time.time()
    staging, landing = work / "staging", work / "landing"
    # A year ahead of the wall clock (see the module docstring), at a day boundary.
    start = (dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=365)).isoformat()
    world = dict(seed=a.seed, users=a.users, videos=a.videos, events_per_day=a.events_per_day,
                 start_date=start, kuairec_dir=None, write_truth=False)
    def say(msg: str) -> None:
        print(f"[soak {time.time() - t_begin:6.1f}s] {msg}", file=sys.stderr, flush=True)

    simulate(staging, days=WARM_DAYS, **world)
    say(f"simulated the first {WARM_DAYS} days into staging")
    shutil.copytree(staging / "catalog", work / "catalog")
    defs = build_defs(work, a.publish_every, a.sweep_s)

    procs: dict[str, subprocess.Popen] = {}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if daemon:
        env["DAGSTER_HOME"] = str(_daemon_instance_home(work))
        env["TIKTOK_SOAK_WORK"] = str(work)
        env["TIKTOK_SOAK_PUBLISH_EVERY"] = str(a.publish_every)
        env["TIKTOK_SOAK_SWEEP_S"] = str(a.sweep_s)
        os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
        instance_cm = dg.DagsterInstance.get()
    else:
        instance_cm = dg.instance_for_test()

    with instance_cm as instance:

        def run(job: str, **kw):
            """A run in this process (the warm-up, the in-process loop, the final catch-up)."""
            return defs.resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False, **kw)

        def tick_landing(cursor):
            requests, cursor = _tick(landing_sensor, defs, instance, cursor)
            for rr in requests:
                run("ingest_job", run_config=rr.run_config, tags=rr.tags)
            return len(requests), cursor

        def tick_online(cursor):
            requests, cursor = _tick(online_update_sensor, defs, instance, cursor)
            for rr in requests:
                run("online_update_job", tags=rr.tags)
            return len(requests), cursor

        # ---- warm-up, in this process on the same instance: two days at once, ingest, catalog,
        # batch retrain, catch up, publish
        with open(work / "warmup.jsonl", "w") as log:
            for files in _flush_groups(list_landing_files(staging / "landing")).values():
                release_flush(staging / "landing", landing, files, log)
        land_cur = online_cur = None
        _, land_cur = tick_landing(land_cur)
        say("warm-up: released and ingested the first days")
        run("catalog_job")
        retrain = run("daily_training_job").asset_materializations_for_node("batch_rankers")
        first_full = retrain[0].metadata["serving_seq"].value if retrain and "serving_seq" in retrain[0].metadata else None
        _, online_cur = tick_online(online_cur)
        run("analytics_publish_job")
        say(f"warm-up: batch retrain published full seq {first_full}, caught up, analytics.duckdb published")
        if first_full is None:
            raise RuntimeError("the batch retrain published no full model; nothing to serve")

        port = _free_port()
        me = [sys.executable, str(Path(__file__).resolve())]
        logs = {name: open(work / f"{name}.log", "w") for name in ("server", "stream", "client", "analyst", "daemon")}
        procs["server"] = subprocess.Popen(
            [sys.executable, "-m", "tiktok_pipelines.cli", "serve", "--data-dir", str(work), "--port", str(port),
             "--reload-interval", "1"], stdout=logs["server"], stderr=subprocess.STDOUT, env=env)
        try:
            _wait_http(port, procs["server"])
            if daemon:
                # The daemon's sensors start from empty cursors: the landing sensor's first tick
                # skips what the warm-up ingested (the ingest log), the online sensor's requests
                # one update (a no-op when there is nothing new).
                procs["daemon"] = subprocess.Popen(
                    [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-f",
                     str(ROOT / "benchmarks" / "soak_defs.py")],
                    stdout=logs["daemon"], stderr=subprocess.STDOUT, env=env, cwd=ROOT)
            watcher = _ServedWatcher(port)
            watcher.start()
            warmup_s = time.time() - t_begin
            t_loop = time.time()
            procs["stream"] = subprocess.Popen(
                me + ["--role", "stream", "--work", str(work), "--first-day", str(WARM_DAYS),
                      "--day-seconds", str(a.day_seconds), "--world", json.dumps(world)],
                stdout=logs["stream"], stderr=subprocess.STDOUT, env=env)
            procs["client"] = subprocess.Popen(
                me + ["--role", "client", "--port", str(port), "--users", str(a.users),
                      "--interval", str(a.client_interval), "--out", str(work / "client.json")],
                stdout=logs["client"], stderr=subprocess.STDOUT, env=env)
            procs["analyst"] = subprocess.Popen(
                me + ["--role", "analyst", "--db", str(work / "analytics.duckdb"),
                      "--interval", str(a.analyst_interval), "--out", str(work / "analyst.json")],
                stdout=logs["analyst"], stderr=subprocess.STDOUT, env=env)

            # ---- the timed part: the daemon's sensors request runs and its run workers execute
            # them (or, in process, this loop ticks the sensors and executes their runs)
            say(f"server up on port {port}; streaming for {a.minutes} min "
                f"({'dagster-daemon' if daemon else 'sensors ticked in process'})")
            deadline = t_loop + a.minutes * 60
            last_publish = time.time()
            hostile_log = open(work / "hostile.jsonl", "w")
            next_hostile, planted = (t_loop + a.hostile_every if a.hostile_every > 0 else float("inf")), 0
            while time.time() < deadline:
                if time.time() >= next_hostile:
                    kind = HOSTILE_KINDS[planted % len(HOSTILE_KINDS)]
                    hostile_log.write(json.dumps({"t": time.time(), **plant_hostile(kind, planted, work, start)}) + "\n")
                    hostile_log.flush()
                    say(f"planted a hostile input: {kind}")
                    planted += 1
                    next_hostile += a.hostile_every
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        raise RuntimeError(f"{name} exited early with {proc.returncode}; see {name}.log")
                if daemon:
                    time.sleep(1)
                    continue
                n_ingest, land_cur = tick_landing(land_cur)
                n_online, online_cur = tick_online(online_cur)
                if time.time() - last_publish >= a.publish_every:
                    run("analytics_publish_job")
                    last_publish = time.time()
                if not n_ingest and not n_online:
                    time.sleep(0.2)
            timed_s = time.time() - t_loop
            hostile_log.close()

            # ---- stop the producers and readers; the server flushes its impression log on exit
            rc = {name: _stop_proc(procs[name]) for name in ("stream", "client", "analyst", "server")}
            watcher.stop.set()
            say(f"stopped: exit codes {rc}; draining the landing zone")
            # ---- drain: the sensor's runs ingest what is left
            if daemon:
                rc["daemon"] = _drain_under_daemon(instance, procs["daemon"], work / STOP_PUBLISHING,
                                                   landing, work / "lake", a.drain_timeout, say)
            else:
                while True:
                    n, land_cur = tick_landing(land_cur)
                    if not n:
                        break
        finally:
            for p in procs.values():
                if p.poll() is None:
                    p.kill()
                    p.wait()
            for f in logs.values():
                f.close()

        # One run with no file list catches whatever the sensor left pending when the soak stopped it
        # (its sweep would have taken such a file within a sweep interval): reported, not failed.
        done_before = Lake(work / "lake").ingested_keys()
        run("ingest_job")
        caught_up_files = len(Lake(work / "lake").ingested_keys() - done_before)
        act = _activity(instance)
        if daemon:  # the daemon keeps the landing sensor's cursor in the instance
            land_cur = next((st.instigator_data.cursor for st in instance.all_instigator_state()
                             if st.instigator_name == landing_sensor.name and st.instigator_data), None)
        sweeps = json.loads(land_cur).get("sweeps", 0) if land_cur else 0

    # ---- the audit
    client = json.loads((work / "client.json").read_text())
    analyst = json.loads((work / "analyst.json").read_text())
    released = []
    for name in ("warmup.jsonl", "stream.jsonl"):
        with open(work / name) as f:
            released += [(name, json.loads(line)) for line in f if line.strip()]
    sim_lines = sum(n for _, r in released for _, n in r["files"])
    hostile = [json.loads(line) for line in (work / "hostile.jsonl").read_text().splitlines() if line.strip()]
    hostile_lines = sum(h["lines"] for h in hostile)
    produced = sim_lines + client["items"] + hostile_lines

    landing_files = list_landing_files(landing)
    disk_lines = {f.rel_path: count_records(landing / f.rel_path) for f in landing_files}
    log = Lake(work / "lake").read_ingest_log().to_pylist()
    logged = Counter(r["rel_path"] for r in log)
    # Recounted from the tables' committed snapshots (their Delta logs name the files; a file left
    # in a table's folder by a writer that died before its commit is not in the lake).
    lake_obj = Lake(work / "lake")
    con = duckdb.connect()
    lake_by_file: Counter = Counter()
    dup_ids = 0
    for src_sql in (table_source(con, lake_obj, events_table(s)) for s in STREAMS):
        if src_sql is not None:
            for src, n in con.execute(f"SELECT _src_file, count(*) FROM {src_sql} GROUP BY 1").fetchall():
                lake_by_file[src] += n
            dup_ids += con.execute(f"SELECT count(*) - count(DISTINCT event_id) FROM {src_sql}").fetchall()[0][0]
    q_sql = table_source(con, lake_obj, QUARANTINE_DIR)
    q_by_file = Counter(dict(con.execute(
        f"SELECT src_file, count(*) FROM {q_sql} GROUP BY 1").fetchall())) if q_sql is not None else Counter()
    con.close()
    dup_by_file = Counter()
    for r in log:
        dup_by_file[r["rel_path"]] += r["rows_duplicate"]
    mismatched = [rel for rel, n in disk_lines.items()
                  if n != lake_by_file[rel] + q_by_file[rel] + dup_by_file[rel]]
    totals = {k: sum(r[k] for r in log) for k in ("rows_read", "rows_lake", "rows_quarantine", "rows_duplicate")}
    disk = {"lake": sum(lake_row_count(work / "lake", s) for s in STREAMS),
            "quarantine": table_row_count(work / "lake", QUARANTINE_DIR)}

    # ---- freshness: release -> first delta from an update started after the flush committed
    committed_at: dict[str, float] = {}
    for t, files in act["ingests"]:
        for rel in files:
            committed_at.setdefault(rel, t)
    fresh, unserved = [], 0
    for name, r in released:
        if name != "stream.jsonl":
            continue
        rels = [rel for rel, _ in r["files"]]
        if any(rel not in committed_at for rel in rels):
            unserved += 1  # ingested only by the drain, after the servers stopped
            continue
        t_commit = max(committed_at[rel] for rel in rels)
        seq = next((s for t, s in act["updates"] if t >= t_commit and s is not None), None)
        t_served = watcher.served_at(seq) if seq is not None else None
        if t_served is None:
            unserved += 1
            continue
        fresh.append(t_served - r["t0"])

    deltas = sum(1 for _, s in act["updates"] if s is not None)
    requested = sum(act["by_job"].values())
    status = {int(k): v for k, v in client["status"].items()}
    checks = {
        "produced == landing lines": produced == sum(disk_lines.values()),
        "landing lines == ingest log rows_read": sum(disk_lines.values()) == totals["rows_read"],
        "rows_read == lake + quarantine + duplicates": totals["rows_read"] == totals["rows_lake"] + totals["rows_quarantine"] + totals["rows_duplicate"],
        "lake/quarantine recount from disk == ingest log": disk == {"lake": totals["rows_lake"], "quarantine": totals["rows_quarantine"]},
        "every file: lines == lake + quarantine + duplicates": not mismatched,
        "every landing file ingested exactly once": set(logged) == set(disk_lines) and all(v == 1 for v in logged.values()),
        "event_id unique in the lake": dup_ids == 0,
        "runs requested == runs succeeded": act["status"].get("SUCCESS", 0) == requested and not act["not_succeeded"],
        "no asset check failed": not act["failed_checks"],
        "analyst queries > 0, 0 failures": analyst["queries"] > 0 and analyst["failures"] == 0,
        "server requests > 0, 0 5xx, 0 errors": client["requests"] > 0 and client["errors"] == 0
        and not any(s >= 500 for s in status),
        "malformed requests got a 4xx": all(k.split(":")[1].startswith("4") for k in client["by_kind"] if k.startswith("bad:")),
        "deltas published > 0": deltas > 0,
        "every recommendation had items (hostile inputs included)": client["empty_answers"] == 0,
        "every hostile landing file is logged once": all(logged.get(h["landing"], 0) == 1
                                                        for h in hostile if "landing" in h),
        "freshness measured": bool(fresh),
        # uvicorn re-raises the SIGTERM after its graceful shutdown: -15 is the server's clean exit
        "processes exited cleanly": all(v == 0 for k, v in rc.items() if k != "server")
        and rc["server"] in (0, -signal.SIGTERM),
    }
    return {
        "ok": all(checks.values()),
        "failed": [k for k, v in checks.items() if not v],
        "duration_s": round(time.time() - t_begin, 1), "warmup_s": round(warmup_s, 1), "timed_s": round(timed_s, 1),
        "events": produced, "events_simulator": sim_lines, "events_server_impressions": client["items"],
        "lake": totals["rows_lake"], "quarantine": totals["rows_quarantine"], "duplicates": totals["rows_duplicate"],
        "landing_files": len(disk_lines), "files_caught_up_by_final_run": caught_up_files,
        "mismatched_files": len(mismatched), "duplicate_event_ids": dup_ids,
        "mode": "in-process" if a.in_process else "dagster-daemon",
        "runs_requested": requested, "runs_succeeded": act["status"].get("SUCCESS", 0), "runs_by_job": dict(act["by_job"]),
        "runs_not_succeeded": act["not_succeeded"], "checks_failed": act["failed_checks"],
        "landing_sweeps": sweeps, "ingest_runs_from_sweep": len(act["sweep_runs"]), "sweep_runs_first_files": act["sweep_runs"][:5],
        "deltas_published": deltas, "online_updates": len(act["updates"]),
        "analytics_publishes": act["by_job"].get("analytics_publish_job", 0),
        "freshness_p50_s": _percentile(fresh, 50), "freshness_p95_s": _percentile(fresh, 95),
        "freshness_samples": len(fresh), "flushes_not_served_before_stop": unserved,
        "hostile_planted": Counter(h["kind"] for h in hostile), "hostile_lines": hostile_lines,
        "serving_versions_set_aside": len(list((work / "serving").glob(".rejected-*"))),
        "analyst": analyst, "client": {k: client[k] for k in ("requests", "status", "errors", "items", "model_seqs_seen",
                                                              "empty_answers", "healthz_degraded")},
        "client_errors": client["error_samples"], "exit_codes": rc,
        "checks": checks,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=5.0, help="length of the timed part")
    p.add_argument("--events-per-day", type=int, default=20_000)
    p.add_argument("--users", type=int, default=2_000)
    p.add_argument("--videos", type=int, default=4_000)
    p.add_argument("--day-seconds", type=float, default=120.0,
                   help="wall seconds over which the streamer releases one simulated day (96 flushes)")
    p.add_argument("--publish-every", type=float, default=30.0, help="seconds between analytics republishes")
    p.add_argument("--sweep-s", type=float, default=30.0,
                   help="the landing sensor's sweep interval (production: 300 s)")
    p.add_argument("--client-interval", type=float, default=0.05, help="client pause between requests (s)")
    p.add_argument("--analyst-interval", type=float, default=0.5, help="analyst pause between query rounds (s)")
    p.add_argument("--seed", type=int, default=21)
    p.add_argument("--hostile-every", type=float, default=60.0,
                   help="seconds between two hostile inputs (%s, in turn); 0: none" % ", ".join(HOSTILE_KINDS))
    p.add_argument("--in-process", action="store_true",
                   help="tick the sensors and execute their runs in this process instead of under "
                   "dagster-daemon (no run worker processes: faster to start, what CI's short soak runs)")
    p.add_argument("--drain-timeout", type=float, default=300.0,
                   help="seconds the daemon gets, after the producers stop, to ingest what is left")
    p.add_argument("--workdir", default=None, help="keep everything here (default: a temp dir, removed)")
    # internal: the child processes
    p.add_argument("--role", choices=["stream", "client", "analyst"], default=None, help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--first-day", type=int, help=argparse.SUPPRESS)
    p.add_argument("--world", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--interval", type=float, help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.role:
        return {"stream": role_stream, "client": role_client, "analyst": role_analyst}[a.role](a)

    work = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="soak-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        report = drive(a, work)
    finally:
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)
    for k in report["failed"]:
        print(f"FAILED: {k}", file=sys.stderr)
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
