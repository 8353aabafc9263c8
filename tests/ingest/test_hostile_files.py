"""Hostile landing files: a file the engine cannot take as it is is quarantined *as a file*.

Each case puts one hostile file beside a valid one. The batch must commit: the valid file's row
in the lake, every line of the hostile file in quarantine with the file's reason (so the
accounting still balances and nothing is lost), the hostile file in the ingest log with that
reason in ``file_reason`` (so it is never tried again), and the batch's own audit clean.

The flush-time bound (review finding 1): a file's flush time, from its name or its mtime, may not
be later than the ingest's clock plus ``future_skew_seconds``; otherwise a file named for 2099 could
carry events dated 2099 past validation, and one such event moves the online watermark to 2099.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.ingest.conftest import FLUSHED_AT_MS, TS_MS, dumps, valid_record, write_landing
from tiktok_pipelines.ingest.engine import (
    INGEST_LOG_SCHEMA,
    QUARANTINE_DIR,
    IngestSettings,
    Lake,
    audit_batch,
    events_table,
    ingest_files,
)
from tiktok_pipelines.ingest.landing import list_landing_files, stat_landing_file
from tiktok_pipelines.schemas import STREAMS

VIEWS = STREAMS["views"]
DT = "views/dt=2026-11-02"
NOW_MS = FLUSHED_AT_MS + 3_600_000  # the ingest's clock: an hour after the valid file's flush
SKEW_MS = IngestSettings().future_skew_seconds * 1000
Y2099_MS = 4_102_358_400_000  # 2099-12-31T00:00:00Z


def _event(i: int, ts_ms: int | None = None) -> str:
    rec = valid_record(VIEWS, i, event_id=f"hostile-{i}")
    if ts_ms is not None:
        rec["ts_ms"] = ts_ms
    return dumps(rec)


def _put(landing: Path, rel: str, lines: list[str], mtime_ms: int | None = None) -> str:
    """Write ``rel`` (a str that may hold surrogate-escaped bytes) with these lines."""
    path = os.path.join(os.fsencode(landing), os.fsencode(rel))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(b"".join(line.encode() + b"\n" for line in lines))
    if mtime_ms is not None:
        os.utime(path, ns=(mtime_ms * 1_000_000, mtime_ms * 1_000_000))
    return rel


# name (relative path), lines, the reason the whole file is quarantined with, and an mtime (None: now)
HOSTILE = {
    "impossible_date": (f"{DT}/views-20261399T120000Z-000002.ndjson", [_event(2), "garbage"],
                        "invalid_flush_time", None),
    "dotdot_in_name": (f"{DT}/x\\..\\y.ndjson", [_event(2), "garbage"], "unsafe_name", None),
    "dotdot_in_dir": ("views/dt=x\\../views-20261102T120000Z-000002.ndjson", [_event(2), "garbage"],
                      "unsafe_name", None),
    "year_9999": (f"{DT}/views-99991231T235959Z-000002.ndjson",
                  [_event(2, ts_ms=253_402_300_800_000), _event(3, ts_ms=253_402_300_700_000), "garbage"],
                  "future_flush_time", None),
    "year_2099": (f"{DT}/views-20991231T000000Z-000002.ndjson", [_event(2, ts_ms=Y2099_MS - 3_600_000)],
                  "future_flush_time", None),
    "future_mtime_no_name_time": (f"{DT}/collector-dump.ndjson", [_event(2, ts_ms=Y2099_MS - 3_600_000)],
                                  "future_flush_time", Y2099_MS),
    "undecodable_name": (DT + "/views-\udcff\udcfe.ndjson", [_event(2), "garbage"], "undecodable_name", None),
}


def _log_rows(lake: Path) -> dict[str, dict]:
    return {r["rel_path"]: r for r in Lake(lake).read_ingest_log().to_pylist()}


def _quarantine(lake: Path) -> list[dict]:
    """The quarantine table's committed rows."""
    ds = Lake(lake).store.dataset(QUARANTINE_DIR)
    return [] if ds is None else sorted(ds.to_table().to_pylist(), key=lambda r: (r["src_file"], r["src_line"]))


def _lake_ids(lake: Path) -> list[str]:
    """The event ids of every stream's committed rows."""
    ids: list[str] = []
    for stream in STREAMS:
        ds = Lake(lake).store.dataset(events_table(stream))
        if ds is not None:
            ids += ds.to_table(columns=["event_id"]).column("event_id").to_pylist()
    return sorted(ids)


def _shown(rel: str) -> str:
    """How a path is recorded: non-UTF-8 bytes of a name are written as \\xNN escapes."""
    return os.fsencode(rel).decode("utf-8", "backslashreplace")


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_file_is_quarantined_as_a_file_and_the_batch_commits(case, dirs):
    landing, lake = dirs
    good = write_landing(landing, "views", [_event(1, ts_ms=TS_MS)], seq=1)
    rel, lines, reason, mtime_ms = HOSTILE[case]
    _put(landing, rel, lines, mtime_ms)

    files = list_landing_files(landing)  # listing never raises on a name
    assert len(files) == 2
    report = ingest_files(files, landing_root=landing, lake_root=lake, now_ms=NOW_MS)

    # The valid file committed; nothing of the hostile one reached the lake.
    assert _lake_ids(lake) == ["hostile-1"]
    # Every line of the hostile file is in quarantine, with the file's reason.
    q = [r for r in _quarantine(lake) if r["src_file"] == _shown(rel)]
    assert sorted(r["src_line"] for r in q) == list(range(1, len(lines) + 1))
    assert {r["reason"] for r in q} == {reason}
    assert [r["raw_line"] for r in sorted(q, key=lambda r: r["src_line"])] == lines
    # The ingest log names the file and why; the accounting balances.
    log = _log_rows(lake)
    assert log[good]["file_reason"] is None and log[good]["rows_lake"] == 1
    bad = log[_shown(rel)]
    assert bad["file_reason"] == reason
    assert (bad["rows_read"], bad["rows_lake"], bad["rows_quarantine"], bad["rows_duplicate"]) == (len(lines), 0, len(lines), 0)
    # A flush time beyond the ingest's clock is not recorded (it would move the online watermark).
    assert all(r["flushed_at_ms"] is None or r["flushed_at_ms"] <= NOW_MS + SKEW_MS for r in log.values())
    assert [(f.file.rel_path, r) for f, r in report.quarantined_files()] == [(rel, reason)]
    assert report.reasons[reason] == len(lines)
    assert audit_batch(lake, landing, report.batch_id) == []
    # Never tried again: the next ingest skips both files.
    again = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake, now_ms=NOW_MS)
    assert again.batch_id is None and len(again.skipped_files) == 2


def test_a_file_the_sensor_lists_can_be_named_in_a_run_config(dirs):
    """The sensor passes listed paths to the ingest job, which stats them: a hostile name that the
    listing gives must be accepted there too (and quarantined by the ingest), or its run fails for
    good and the sweep asks for it again every five minutes."""
    landing, _ = dirs
    for rel, lines, _, mtime_ms in HOSTILE.values():
        _put(landing, rel, lines, mtime_ms)
    listed = list_landing_files(landing)
    assert len(listed) == len(HOSTILE)
    for f in listed:
        again = stat_landing_file(landing, f.rel_path)
        assert (again.key, again.flushed_at_ms) == (f.key, f.flushed_at_ms)


def test_an_empty_file_has_no_rows_and_does_not_raise(dirs):
    landing, lake = dirs
    good = write_landing(landing, "views", [_event(1, ts_ms=TS_MS)], seq=1)
    empty = write_landing(landing, "views", [], seq=2)
    assert (landing / empty).stat().st_size == 0
    report = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake, now_ms=NOW_MS)
    log = _log_rows(lake)
    assert (log[empty]["rows_read"], log[empty]["rows_quarantine"], log[empty]["file_reason"]) == (0, 0, None)
    assert log[good]["rows_lake"] == 1 and _lake_ids(lake) == ["hostile-1"]
    assert audit_batch(lake, landing, report.batch_id) == []


def test_a_file_named_for_2099_puts_nothing_in_the_lake(dirs):
    """Finding 1: a 2099 name no longer lets a 2099 event pass; the valid files of the batch commit."""
    landing, lake = dirs
    good = [write_landing(landing, "views", [_event(i, ts_ms=TS_MS + i)], seq=i) for i in (1, 2)]
    future = write_landing(landing, "views", [_event(9, ts_ms=Y2099_MS - 60_000), _event(10, ts_ms=TS_MS)],
                           seq=3, flushed_at_ms=Y2099_MS)
    report = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake, now_ms=NOW_MS)
    assert _lake_ids(lake) == ["hostile-1", "hostile-2"]
    assert not list(lake.glob("events/views/event_date=2099-*"))
    q = {r["src_line"]: r["reason"] for r in _quarantine(lake) if r["src_file"] == future}
    assert q == {1: "future_flush_time", 2: "future_flush_time"}
    log = _log_rows(lake)
    assert [log[g]["rows_lake"] for g in good] == [1, 1]
    assert log[future]["file_reason"] == "future_flush_time" and log[future]["flushed_at_ms"] is None
    assert max(r["flushed_at_ms"] for r in log.values() if r["flushed_at_ms"] is not None) <= NOW_MS
    assert audit_batch(lake, landing, report.batch_id) == []


def test_an_event_past_the_ingest_clock_is_future_whatever_the_name_says(dirs):
    """A name within the bound (flush = now + 200 s, skew 300 s) cannot stretch it: the event limit
    is the earlier of flush + skew and now + skew."""
    landing, lake = dirs
    flush = NOW_MS + 200_000
    write_landing(landing, "views", [_event(1, ts_ms=NOW_MS + 299_000), _event(2, ts_ms=NOW_MS + 400_000)],
                  seq=1, flushed_at_ms=flush)
    report = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake, now_ms=NOW_MS)
    assert _lake_ids(lake) == ["hostile-1"]
    assert [(r["src_line"], r["reason"]) for r in _quarantine(lake)] == [(2, "future_timestamp")]
    assert report.quarantined_files() == []


def test_the_flush_bound_can_be_widened_for_a_world_dated_ahead(dirs):
    """``max_flush_ahead_seconds``: a replay of a simulated world dated ahead of the wall clock
    (benchmarks/soak.py) may name files in the future; events are still held to flush + skew."""
    landing, lake = dirs
    flush = NOW_MS + 365 * 86_400_000
    write_landing(landing, "views", [_event(1, ts_ms=flush - 1000), _event(2, ts_ms=flush + 400_000)],
                  seq=1, flushed_at_ms=flush)
    settings = IngestSettings(max_flush_ahead_seconds=400 * 86_400)
    ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake, now_ms=NOW_MS,
                 settings=settings)
    assert _lake_ids(lake) == ["hostile-1"]
    assert [(r["src_line"], r["reason"]) for r in _quarantine(lake)] == [(2, "future_timestamp")]


def test_cli_ingest_exits_0_with_hostile_files_present(tmp_path, capsys):
    """The review's reproduction: each of these made ``tiktok-pipelines ingest`` exit 1."""
    from tiktok_pipelines.cli import main

    landing = tmp_path / "data" / "landing"
    write_landing(landing, "views", [_event(1, ts_ms=TS_MS)], seq=1)
    for rel, lines, _, mtime_ms in HOSTILE.values():
        _put(landing, rel, lines, mtime_ms)
    write_landing(landing, "views", [], seq=5)  # empty
    assert main(["ingest", "--data-dir", str(tmp_path / "data")]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["files"] == len(HOSTILE) + 2 and out["rows_lake"] == 1
    assert out["rows_read"] == out["rows_lake"] + out["rows_quarantine"] + out["rows_duplicate"]
