"""Shared small simulations and an independent, pure-Python reading of the wire contract."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from tiktok_pipelines import schemas
from tiktok_pipelines.simulator import simulate

KUAIREC_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "kuairec"
SMALL = {"seed": 11, "users": 500, "videos": 1000, "days": 1, "events_per_day": 20_000}
FUTURE_SKEW_MS = 300_000  # what ingestion allows (IngestSettings defaults)
MAX_LATENESS_MS = 30 * 86_400_000


def _type_ok(f: schemas.Field, v) -> bool:
    if f.type == schemas.INT64:
        return isinstance(v, int) and not isinstance(v, bool)
    if f.type == schemas.FLOAT64:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if f.type == schemas.STRING:
        return isinstance(v, str)
    if f.type == schemas.BOOL:
        return isinstance(v, bool)
    if f.type == schemas.JSON_OBJECT:
        return isinstance(v, dict)
    raise AssertionError(f.type)


def reason_for(stream: str, raw: bytes, flushed_at_ms: int) -> str | None:
    """The first rule a landing line breaks, in the order schemas.REASONS and ingestion use."""
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "malformed_json"
    if not isinstance(obj, dict):
        return "not_an_object"
    for f in schemas.STREAMS[stream].fields:
        v = obj.get(f.name)
        if v is None:
            if f.required:
                return f"missing_field:{f.name}"
            continue
        if not _type_ok(f, v):
            return f"wrong_type:{f.name}"
        if f.enum is not None and v not in f.enum:
            return f"unknown_enum:{f.name}"
        if f.min_value is not None and v < f.min_value:
            return f"out_of_range:{f.name}"
        if f.type in (schemas.STRING, schemas.JSON_OBJECT):
            text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, separators=(",", ":"))
            if len(text) > f.max_chars:
                return f"oversized_string:{f.name}"
    ts = obj["ts_ms"]
    if ts > flushed_at_ms + FUTURE_SKEW_MS:
        return "future_timestamp"
    if ts < flushed_at_ms - MAX_LATENESS_MS:
        return "stale_timestamp"
    return None


@dataclass
class Sim:
    out: Path
    summary: object
    files: pl.DataFrame  # truth/runs/<run>/files.parquet
    records: pl.DataFrame  # truth/runs/<run>/records.parquet

    def lines(self, stream: str | None = None):
        """(stream, rel_path, flushed_at_ms, line_no, raw bytes) for every landing line."""
        for row in self.files.sort("stream", "flushed_at_ms", "seq").iter_rows(named=True):
            if stream is not None and row["stream"] != stream:
                continue
            data = (self.out / "landing" / row["rel_path"]).read_bytes()
            assert data.endswith(b"\n")
            for i, raw in enumerate(data[:-1].split(b"\n"), start=1):
                yield row["stream"], row["rel_path"], row["flushed_at_ms"], i, raw


def load(out: Path, summary) -> Sim:
    run = out / "truth" / "runs" / f"{summary.start_date}_{summary.end_date}"
    return Sim(out, summary, pl.read_parquet(run / "files.parquet"), pl.read_parquet(run / "records.parquet"))


@pytest.fixture(scope="session")
def small_sim(tmp_path_factory) -> Sim:
    out = tmp_path_factory.mktemp("sim_small")
    # a higher dirty rate so every kind shows up many times at this small scale
    return load(out, simulate(out, **SMALL, dirty_rate=0.04, late_rate=0.02))


@pytest.fixture(scope="session")
def clean_truth(small_sim):
    """{(rel_path, line): record row} for every non-clean record."""
    return {(r["rel_path"], r["line"]): r for r in small_sim.records.iter_rows(named=True)}
