"""Serving: requests per second and latency of the model server's /recommend, over real HTTP.

    python benchmarks/serving.py [--data-dir data] [--requests 4000] [--clients 8]

The server is the one the CLI runs: ``tiktok-pipelines serve --data-dir D`` in a process of its
own (uvicorn, the reload thread, impressions logged into D/landing), on a free port on 127.0.0.1.
``--data-dir``: a data directory ``make quickstart`` produced (a served version in serving/, the
catalog, and, for the re-rank, a LightGBM champion in models/). Without one, a small one is built
in a temp dir (not timed): a simulated world of ``--videos`` videos (20k, the quick start's
catalog: the catalog size is what retrieval costs) and ``--users`` users, two days ingested and
joined, the torch ranker trained on them and published (every catalog video gets a row, as a
quick-start week covers the catalog), a LightGBM ranker trained on the same examples and
registered as the champion, and the online counters written from the lake: so every request
retrieves ``rerank_candidates`` (100) videos out of 20k with the two towers and re-ranks them
with LightGBM on the features the server computes, then logs 10 impressions with them.

Timed: ``--clients`` threads, each with one keep-alive connection, send ``--requests`` requests
in all (``/recommend?user_id=U&k=10``, U drawn from the catalog's users; a user the model has no
row for is served the trending fallback, re-ranked the same way), after ``--warmup`` untimed
ones. Latency is per request as the client sees it.

Last line, one JSON object: {"requests", "rps", "p50_ms", "p99_ms", "errors", ...}.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_data_dir(root: Path, *, users: int, videos: int, events_per_day: int, seed: int = 7) -> dict:
    """A served two-tower version and a LightGBM champion trained on two simulated days."""
    import duckdb

    from tiktok_pipelines.features.online import compute_counters, write_counters
    from tiktok_pipelines.ingest.engine import events_table, ingest_files, table_source
    from tiktok_pipelines.ingest.landing import list_landing_files
    from tiktok_pipelines.serving.store import ServingPublisher
    from tiktok_pipelines.simulator import simulate
    from tiktok_pipelines.training.joiner import JoinerConfig, build_examples, read_examples
    from tiktok_pipelines.training.lgbm import LGBMRanker
    from tiktok_pipelines.training.registry import ModelRegistry
    from tiktok_pipelines.training.torch_ranker import MonolithRanker

    started = time.perf_counter()
    simulate(root, seed=seed, users=users, videos=videos, days=2, events_per_day=events_per_day,
             kuairec_dir=None, write_truth=False, late_rate=0.0)
    landing, lake = root / "landing", root / "lake"
    ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
    shutil.rmtree(landing)  # ingested: the landing zone is left to the server's impressions
    config = JoinerConfig()
    build_examples(lake, config)
    examples = read_examples(lake).drop_columns(["event_date"])  # ORDER BY ts_ms
    through = int(examples.column("ts_ms")[examples.num_rows - 1].as_py())

    model = MonolithRanker(dim=16, admit_min_count=None)
    model.fit(examples, batch_size=1024)
    # Every catalog video gets a row (a quick-start week covers the catalog): retrieval scores 20k.
    catalog_videos = pq.read_table(root / "catalog" / "videos.parquet", columns=["video_id"]).column("video_id")
    model.embeddings.tables["video_id"].lookup_or_insert(catalog_videos.to_numpy(), now_s=through // 1000)
    ServingPublisher(root / "serving").publish(
        model.embeddings.tables, now_s=through // 1000, dense=model.dense_state(), full=True,
        metadata={"model": "torch_ranker", "negative_rate": config.negative_rate, "trained_through_ms": through})

    lgbm = LGBMRanker.fit(examples, rounds=100)
    registry = ModelRegistry(root / "models")
    version = registry.register("lgbm_ranker", lgbm.save, {"metrics": {}, "negative_rate": config.negative_rate})
    registry.decide("lgbm_ranker", version, 0.5, None, margin=0.0)

    def lake_table(stream: str, cols: str):
        # the events table's committed snapshot (the files its Delta log names), never a glob
        con = duckdb.connect()
        try:
            return con.sql(f"SELECT {cols} FROM {table_source(con, lake, events_table(stream))}").to_arrow_table()
        finally:
            con.close()

    views = lake_table("views", "ts_ms, user_id, video_id, request_id, watch_time_ms, video_duration_ms")
    inter = lake_table("interactions", "ts_ms, user_id, video_id, creator_id, event_type, request_id")
    write_counters(lake, compute_counters(views, inter, through), through)
    return {"examples": examples.num_rows, "build_s": round(time.perf_counter() - started, 1)}


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` used so far (Linux; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ms(latencies_s: list[float], q: float) -> float:
    return round(1000 * float(np.percentile(latencies_s, q)), 2)


def _wait_ready(base: tuple[str, int], proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection(*base, timeout=2)
            conn.request("GET", "/healthz")
            ok = json.loads(conn.getresponse().read()).get("model_loaded")
            conn.close()
            if ok:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the server did not load a model in time")


def run_clients(base: tuple[str, int], user_ids: np.ndarray, *, requests: int, clients: int, k: int,
                seed: int = 0) -> tuple[list[float], int, float, set]:
    """``requests`` requests from ``clients`` keep-alive connections; (latencies s, errors, wall s, ranked_by)."""
    rng = np.random.default_rng(seed)
    users = rng.choice(user_ids, size=requests)
    latencies: list[float] = []
    errors = [0]
    ranked_by: set = set()
    next_i = [0]
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection(*base, timeout=30)
        mine: list[float] = []
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= requests:
                break
            t0 = time.perf_counter()
            try:
                conn.request("GET", f"/recommend?user_id={int(users[i])}&k={k}")
                resp = conn.getresponse()
                body = resp.read()
                ok = resp.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(*base, timeout=30)
            mine.append(time.perf_counter() - t0)
            if ok:
                if len(ranked_by) < 8:
                    ranked_by.add(json.loads(body)["ranked_by"].split("-")[0])
            else:
                with lock:
                    errors[0] += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors[0], time.perf_counter() - t0, ranked_by


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None, help="a data dir with serving/, catalog/, models/ (make quickstart)")
    p.add_argument("--requests", type=int, default=4000)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--sequential", type=int, default=500,
                   help="also time this many requests from one client first (0: skip)")
    p.add_argument("--users", type=int, default=3000)
    p.add_argument("--videos", type=int, default=20_000)
    p.add_argument("--events-per-day", type=int, default=150_000)
    p.add_argument("--workdir", default=None, help="build the data dir here (kept) instead of a temp dir")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    p.add_argument("--profile", default=None, help="run the server under cProfile, stats written to this file")
    args = p.parse_args()

    work = None
    info: dict = {}
    if args.data_dir:
        data_dir = Path(args.data_dir)
    else:
        work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-serving-"))
        data_dir = work / "data"
        if not (data_dir / "serving").exists():
            info = build_data_dir(data_dir, users=args.users, videos=args.videos, events_per_day=args.events_per_day)
            print(f"# built {data_dir}: {json.dumps(info)}", file=sys.stderr, flush=True)
    user_ids = pq.read_table(data_dir / "catalog" / "users.parquet", columns=["user_id"]).column("user_id").to_numpy()

    port = _free_port()
    base = ("127.0.0.1", port)
    cmd = [sys.executable, "-m", "tiktok_pipelines.cli", "serve", "--data-dir", str(data_dir), "--port", str(port)]
    if args.profile:
        cmd = [sys.executable, "-m", "cProfile", "-o", args.profile, *cmd[1:]]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(base, proc, timeout_s=300)
        run_clients(base, user_ids, requests=args.warmup, clients=args.clients, k=args.k, seed=1)
        result: dict = {}
        if args.sequential:
            lat, errors, wall, _ = run_clients(base, user_ids, requests=args.sequential, clients=1, k=args.k, seed=2)
            result["sequential"] = {"requests": args.sequential, "p50_ms": _ms(lat, 50), "p99_ms": _ms(lat, 99),
                                    "errors": errors}
            print(f"# one client: {json.dumps(result['sequential'])}", file=sys.stderr, flush=True)
        cpu0, client0, load0 = _cpu_s(proc.pid), _cpu_s(os.getpid()), os.getloadavg()[0]
        lat, errors, wall, ranked_by = run_clients(base, user_ids, requests=args.requests, clients=args.clients,
                                                   k=args.k, seed=3)
        server_cpu_ms = 1000 * (_cpu_s(proc.pid) - cpu0) / args.requests
        client_cpu_ms = 1000 * (_cpu_s(os.getpid()) - client0) / args.requests
        load = round(max(load0, os.getloadavg()[0]), 2)
    finally:
        proc.send_signal(2)  # SIGINT: uvicorn shuts down gracefully (and cProfile writes its stats)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if work is not None and not (args.keep or args.workdir):
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({
        "requests": args.requests, "rps": round(args.requests / wall, 1),
        "p50_ms": _ms(lat, 50), "p99_ms": _ms(lat, 99),
        "errors": errors, "clients": args.clients, "k": args.k, "ranked_by": sorted(ranked_by),
        # CPU time per request (the server's, the clients'): less sensitive than rps to the machine's other load
        "server_cpu_ms_per_request": round(server_cpu_ms, 3),
        "client_cpu_ms_per_request": round(client_cpu_ms, 3), "cpus": os.cpu_count(), "loadavg_1m": load,
        **result, **({"build": info} if info else {}),
    }))
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
