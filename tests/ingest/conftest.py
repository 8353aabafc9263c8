from __future__ import annotations

import json
from pathlib import Path

import pytest

from tiktok_pipelines.schemas import BOOL, FLOAT64, INT64, JSON_OBJECT, STRING, StreamSchema, landing_rel_path

FLUSHED_AT_MS = 1_793_620_800_000  # 2026-11-02T12:00:00Z
TS_MS = FLUSHED_AT_MS - 3_600_000


def valid_value(field, i: int = 0):
    if field.enum:
        return field.enum[i % len(field.enum)]
    if field.name == "ts_ms":
        return TS_MS + i
    if field.type == STRING:
        return f"{field.name}-{i}"
    if field.type == INT64:
        return int(field.min_value or 0) + 1 + i
    if field.type == FLOAT64:
        return 0.5 + i
    if field.type == BOOL:
        return True
    if field.type == JSON_OBJECT:
        return {"k": i, "s": "v"}
    raise AssertionError(field.type)


def valid_record(schema: StreamSchema, i: int = 0, *, event_id: str | None = None) -> dict:
    rec = {f.name: valid_value(f, i) for f in schema.fields}
    rec["event_id"] = event_id or f"{schema.name}-ok-{i}"
    return rec


def write_landing(landing: Path, stream: str, lines: list[str | bytes], *, seq: int = 1,
                  flushed_at_ms: int = FLUSHED_AT_MS) -> str:
    rel = landing_rel_path(stream, flushed_at_ms, seq)
    path = landing / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join((l if isinstance(l, bytes) else l.encode()) + b"\n" for l in lines)
    path.write_bytes(data)
    return rel


def dumps(rec: dict) -> str:
    return json.dumps(rec, ensure_ascii=False)


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    landing.mkdir()
    return landing, lake
