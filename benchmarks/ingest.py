"""Ingest throughput against the engine's floor, in one run on the same files.

    python benchmarks/ingest.py --events 10000000      # the target scale
    python benchmarks/ingest.py --events 500000        # a quick run
    python benchmarks/ingest.py --events 1000000 --s3  # also the same ingest into a local S3 server
    python benchmarks/ingest.py --lake s3://bucket/lake  # the lake on an S3 endpoint of your own
                                                        # (AWS_ENDPOINT_URL and credentials from the env)

1. Simulate ``--events`` events (one day, dirty records included) into a temp dir.
2. Our full path: parse, validate, dedupe, quarantine, write the Delta tables' Parquet files, commit
   (one Delta transaction per table). The compiled typing kernel is compiled or loaded from its cache
   first and that time reported apart (``jit_warm_up_s``: ~7 s once per install, ~0.4 s after);
   ``--sql-only`` runs the same ingest with every line typed in DuckDB instead.
3. The floor: DuckDB's own ``read_json`` -> Parquet ``COPY`` of the same files (typed columns,
   ``ignore_errors`` so dirty lines do not abort it; it validates, dedupes and accounts for nothing).

Last line, one JSON object: {"events", "events_per_s", "duckdb_copy_events_per_s", "ratio", "lake", ...}.
ratio = our events/s over DuckDB's; the two alternate ``--repeat`` times (default 3) and the pair
with the median ratio is reported, every pair's ratio under "ratios".
Target on the 2-core dev machine at 10M events: ratio >= 0.5.
With ``--s3`` the same files are ingested a second time into a fresh lake on a local S3 server
(moto's standalone server, from the ``test`` extra), reported under ``"s3"`` with its own ratio
against the same DuckDB copy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

import duckdb

from tiktok_pipelines.ingest.engine import IngestSettings, ingest_files
from tiktok_pipelines.ingest.fastpath import warm_up
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.ingest.validate import sql_type
from tiktok_pipelines.lake import sql_path
from tiktok_pipelines.schemas import STREAMS
from tiktok_pipelines.simulator import simulate


def duckdb_copy(files_by_stream: dict[str, list[str]], out: Path) -> float:
    con = duckdb.connect()
    started = time.perf_counter()
    for stream, files in files_by_stream.items():
        cols = {f.name: sql_type(f) for f in STREAMS[stream].fields}
        con.execute(
            f"COPY (SELECT * FROM read_json(?, format = 'newline_delimited', columns = {cols!r}, "
            f"ignore_errors = true)) TO {sql_path(out / f'{stream}.parquet')} "
            # the same codec as the lake, so the two differ only in what they do
            f"(FORMAT parquet, COMPRESSION {IngestSettings().compression})",
            [files],
        )
    seconds = time.perf_counter() - started
    con.close()
    return seconds


@contextmanager
def local_s3():
    """A throwaway S3 endpoint on 127.0.0.1 (moto's server) with a fresh bucket; yields its lake URI."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")}
    # moto accepts any credentials; these exist only in this process.
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_REGION="us-east-1")
    try:
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{bucket}", method="PUT"), timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("the local S3 server (python -m moto.server) did not start; "
                                       "pip install 'moto[server]'") from None
                time.sleep(0.2)
        yield f"s3://{bucket}/lake"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--workdir", default=None, help="where to simulate (default: a temp dir, removed after)")
    # RAM by default: the VM's disk throttles sustained writes and its page cache is reclaimed
    # aggressively, which would measure the disk, not the two ingest paths.
    p.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                   help="parent of the temp work dir (default /dev/shm when it exists)")
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--videos", type=int, default=20_000)
    p.add_argument("--lake", default=None, help="the lake's location (default: a local dir in the work dir); "
                   "s3://bucket/prefix uses AWS_ENDPOINT_URL and the AWS credentials of the environment")
    p.add_argument("--s3", action="store_true", help="also ingest into a local S3 server (reported as \"s3\")")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs of each contender, alternating; the pair with the median ratio is reported")
    p.add_argument("--sql-only", action="store_true",
                   help="type every line in DuckDB's SQL (IngestSettings.compiled_typing off), for comparison")
    args = p.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-ingest-", dir=args.dir))
    try:
        t = time.perf_counter()
        simulate(work, seed=11, users=args.users, videos=args.videos, days=1,
                 events_per_day=args.events, start_date=dt.date(2026, 11, 1), kuairec_dir=None)
        print(f"simulated in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        landing = work / "landing"
        files = list_landing_files(landing)
        size_mb = sum(f.size for f in files) / 1e6
        by_stream: dict[str, list[str]] = {}
        for f in files:
            by_stream.setdefault(f.stream, []).append(str(landing / f.rel_path))

        # Warm the page cache for both contenders alike.
        for f in files:
            with open(landing / f.rel_path, "rb") as fh:
                while fh.read(1 << 24):
                    pass

        # The compiled path's kernel is compiled once per install (then cached beside the code):
        # that one-time cost is reported, not timed as throughput.
        jit_s = warm_up()
        settings = IngestSettings(compiled_typing=not args.sql_only)
        # The two contenders alternate, --repeat times, each ingest into a fresh lake: a shared VM
        # swings ±15% from minute to minute, so the pair with the median ratio is reported, and
        # every pair's ratio beside it. A lake of your own (--lake) is ingested once.
        repeat = max(1, args.repeat) if args.lake is None else 1
        runs: list[tuple[float, float]] = []
        for i in range(repeat):
            lake = args.lake or str(work / f"lake{i}")
            report = ingest_files(files, landing_root=landing, lake_root=lake, settings=settings)
            base_out = work / f"duckdb_copy{i}"
            base_out.mkdir()
            runs.append((report.seconds, duckdb_copy(by_stream, base_out)))
            if i < repeat - 1:  # keep the last pair's outputs only (RAM)
                shutil.rmtree(lake, ignore_errors=True)
                shutil.rmtree(base_out, ignore_errors=True)
        ratios = [base / ours for ours, base in runs]
        ours_s, base_s = runs[sorted(range(repeat), key=ratios.__getitem__)[repeat // 2]]
        events = report.totals()["rows_read"]

        result = {
            "events": events,
            "events_per_s": round(events / ours_s),
            "duckdb_copy_events_per_s": round(events / base_s),
            "ratio": round(base_s / ours_s, 3),
            "ratios": [round(r, 3) for r in ratios],
            "seconds": round(ours_s, 2),
            "duckdb_copy_seconds": round(base_s, 2),
            "landing_mb": round(size_mb, 1),
            "files": len(files),
            "rows_lake": report.totals()["rows_lake"],
            "rows_quarantine": report.totals()["rows_quarantine"],
            "rows_duplicate": report.totals()["rows_duplicate"],
            "compiled_lines": report.compiled_lines,
            "jit_warm_up_s": round(jit_s, 2),
            "lake": "local" if "://" not in lake else lake,
            "cpus": os.cpu_count(),
            "dir": str(work.parent),
        }
        if args.s3:
            with local_s3() as s3_lake:
                s3_report = ingest_files(files, landing_root=landing, lake_root=s3_lake, settings=settings)
            assert s3_report.totals() == report.totals(), "the two lakes must hold the same rows"
            result["s3"] = {
                "events_per_s": round(events / s3_report.seconds),
                "ratio": round(base_s / s3_report.seconds, 3),
                "seconds": round(s3_report.seconds, 2),
                "lake": "local S3 server (moto) on 127.0.0.1",
            }
        print(json.dumps(result))
        return 0
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
