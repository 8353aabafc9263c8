"""Every dirty-record case and every schema rule, through the real engine (DuckDB + Parquet)."""

from __future__ import annotations

import duckdb
import pytest

from tests.ingest.conftest import FLUSHED_AT_MS, dumps, valid_record, write_landing
from tiktok_pipelines.ingest.engine import (
    QUARANTINE_DIR,
    IngestSettings,
    audit_batch,
    events_table,
    ingest_files,
    table_source,
)
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.schemas import FLOAT64, INT64, JSON_OBJECT, STREAMS, STRING


def _ingest(landing, lake, **settings):
    return ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake,
                        settings=IngestSettings(**settings), now_ms=FLUSHED_AT_MS)


def _sql(lake, table: str, query: str) -> list[tuple]:
    """``query`` over a lake table's committed rows (``{t}`` in it names them; none: no rows)."""
    con = duckdb.connect()
    try:
        source = table_source(con, lake, table)
        return [] if source is None else con.sql(query.format(t=source)).fetchall()
    finally:
        con.close()


def _quarantine_by_line(lake) -> dict[int, str]:
    return dict(_sql(lake, QUARANTINE_DIR, "SELECT src_line, reason FROM {t}"))


def _lake_rows(lake, stream):
    return _sql(lake, events_table(stream), "SELECT * FROM {t} ORDER BY _src_line")


def _wrong_type_value(field):
    if field.type == STRING:
        return 12345
    if field.type == INT64:
        return "12"  # a numeric string is still the wrong JSON type
    if field.type == FLOAT64:
        return "0.5"
    if field.type == JSON_OBJECT:
        return [1, 2]
    return "true"


@pytest.mark.parametrize("stream", list(STREAMS))
def test_each_schema_rule(stream, dirs):
    """For each stream: one valid record, then one record per broken rule; each lands where it must."""
    landing, lake = dirs
    schema = STREAMS[stream]
    lines: list[str] = [dumps(valid_record(schema, 0))]
    expected: dict[int, str] = {}

    def add(rec: dict, reason: str) -> None:
        lines.append(dumps(rec))
        expected[len(lines)] = reason

    for i, f in enumerate(schema.fields, start=1):
        if f.required:
            rec = valid_record(schema, i, event_id=f"missing-{f.name}")
            del rec[f.name]
            add(rec, f"missing_field:{f.name}")
            rec = valid_record(schema, i, event_id=f"null-{f.name}")
            rec[f.name] = None
            add(rec, f"missing_field:{f.name}")
        if f.name != "event_id":
            rec = valid_record(schema, i, event_id=f"type-{f.name}")
            rec[f.name] = _wrong_type_value(f)
            add(rec, f"wrong_type:{f.name}")
        if f.enum:
            rec = valid_record(schema, i, event_id=f"enum-{f.name}")
            rec[f.name] = "definitely_not_in_enum"
            add(rec, f"unknown_enum:{f.name}")
        if f.min_value is not None and f.name != "ts_ms":
            rec = valid_record(schema, i, event_id=f"range-{f.name}")
            rec[f.name] = int(f.min_value) - 1
            add(rec, f"out_of_range:{f.name}")
        if f.type == STRING and not f.enum and f.name != "event_id":
            rec = valid_record(schema, i, event_id=f"big-{f.name}")
            rec[f.name] = "x" * (f.max_chars + 1)
            add(rec, f"oversized_string:{f.name}")
    # Optional fields may be absent or null: still valid.
    for f in schema.fields:
        if not f.required:
            rec = valid_record(schema, 100, event_id=f"optional-{f.name}")
            del rec[f.name]
            lines.append(dumps(rec))
    write_landing(landing, stream, lines)

    report = _ingest(landing, lake)

    got = _quarantine_by_line(lake)
    assert got == expected
    n_optional = sum(1 for f in schema.fields if not f.required)
    assert report.totals() == {
        "files": 1, "rows_read": len(lines), "rows_lake": 1 + n_optional,
        "rows_quarantine": len(expected), "rows_duplicate": 0,
    }
    rows = _lake_rows(lake, stream)
    # The valid record arrives typed, value for value.
    names = [d[0] for d in _sql(lake, events_table(stream), "DESCRIBE SELECT * FROM {t}")]
    first = dict(zip(names, rows[0]))
    for f in schema.fields:
        want = valid_record(schema, 0)[f.name]
        got_value = first[f.name]
        if f.type == JSON_OBJECT:
            import json
            got_value = json.loads(got_value)
        assert got_value == want, f.name
    assert audit_batch(lake, landing, report.batch_id) == []


DIRTY = {
    "malformed_json_truncated": ('{"event_id": "a", "ts_ms": 1', "malformed_json"),
    "malformed_json_garbage": ("\x00\x01garbage}", "malformed_json"),
    "not_an_object": ('["an", "array"]', "not_an_object"),
    "scalar": ('"just a string"', "not_an_object"),
    "indented_array": (' \t["an", "array"]', "not_an_object"),
    "float_for_int": ({"watch_time_ms": 1.5}, "wrong_type:watch_time_ms"),
    "exponent_for_int": ({"watch_time_ms": 1e3}, "wrong_type:watch_time_ms"),
    "bool_for_int": ({"user_id": True}, "wrong_type:user_id"),
    "int64_overflow": ('{"event_id": "o", "ts_ms": 1, "user_id": 99999999999999999999}', None),
    "object_for_int": ({"user_id": {"x": 1}}, "wrong_type:user_id"),
    "array_for_string": ({"session_id": ["a"]}, "wrong_type:session_id"),
    "number_for_string": ({"session_id": 7}, "wrong_type:session_id"),
    "negative_duration": ({"watch_time_ms": -5}, "out_of_range:watch_time_ms"),
    "zero_video_duration": ({"video_duration_ms": 0}, "out_of_range:video_duration_ms"),
    "unknown_enum": ({"traffic_source": "television"}, "unknown_enum:traffic_source"),
    "enum_wrong_case": ({"traffic_source": "ForYou"}, "unknown_enum:traffic_source"),
    "oversized_string": ({"session_id": "s" * 65}, "oversized_string:session_id"),
    "future_timestamp": ({"ts_ms": FLUSHED_AT_MS + 301_000}, "future_timestamp"),
    "stale_timestamp": ({"ts_ms": 1_000}, "stale_timestamp"),
    "negative_timestamp": ({"ts_ms": -1}, "out_of_range:ts_ms"),
}


def test_an_indented_object_is_an_object(dirs):
    """Leading blanks before the brace: the line is still an object (not only lines starting with it)."""
    landing, lake = dirs
    schema = STREAMS["views"]
    write_landing(landing, "views", [" \t" + dumps(valid_record(schema, 0)), "\r" + dumps(valid_record(schema, 1))])
    report = _ingest(landing, lake)
    assert report.totals()["rows_lake"] == 2 and report.totals()["rows_quarantine"] == 0


@pytest.mark.parametrize("case", list(DIRTY))
def test_dirty_record_cases(case, dirs):
    landing, lake = dirs
    schema = STREAMS["views"]
    change, reason = DIRTY[case]
    if isinstance(change, dict):
        rec = valid_record(schema, 1, event_id="dirty")
        rec.update(change)
        line = dumps(rec)
    else:
        line = change
    write_landing(landing, "views", [dumps(valid_record(schema, 0)), line])
    report = _ingest(landing, lake)
    got = _quarantine_by_line(lake)
    assert list(got) == [2]
    if reason is None:  # several rules fail; the first by field order is named
        assert got[2].startswith(("wrong_type", "missing_field")), got
    else:
        assert got[2] == reason
    assert report.totals()["rows_lake"] == 1


def test_invalid_utf8_is_quarantined_with_its_line(dirs):
    landing, lake = dirs
    schema = STREAMS["views"]
    write_landing(landing, "views", [dumps(valid_record(schema, 0)), b'{"event_id": "\xff\xfe"}',
                                     dumps(valid_record(schema, 2))])
    report = _ingest(landing, lake)
    assert _quarantine_by_line(lake) == {2: "malformed_json:invalid_utf8"}
    assert report.totals()["rows_lake"] == 2


def test_late_event_lands_in_its_own_date(dirs):
    landing, lake = dirs
    schema = STREAMS["views"]
    late = valid_record(schema, 1, event_id="late")
    late["ts_ms"] = FLUSHED_AT_MS - 2 * 86_400_000  # two days late: 2026-10-31
    write_landing(landing, "views", [dumps(valid_record(schema, 0)), dumps(late)])
    _ingest(landing, lake)
    dates = dict(_sql(lake, events_table("views"), "SELECT event_id, event_date::VARCHAR FROM {t}"))
    assert dates == {"views-ok-0": "2026-11-02", "late": "2026-10-31"}


def test_duplicates_exact_and_conflicting(dirs):
    landing, lake = dirs
    schema = STREAMS["views"]
    a = valid_record(schema, 0, event_id="A")
    a_conflict = dict(a, watch_time_ms=a["watch_time_ms"] + 1)
    # Same content with keys reordered is still the same event.
    a_reordered = dict(reversed(list(a.items())))
    write_landing(landing, "views", [dumps(a), dumps(a), dumps(a_reordered), dumps(a_conflict)], seq=1)
    # Later file: the same event re-sent by a retrying client, and a conflicting copy.
    write_landing(landing, "views", [dumps(a), dumps(a_conflict), dumps(valid_record(schema, 5))], seq=2,
                  flushed_at_ms=FLUSHED_AT_MS + 60_000)
    first = _ingest(landing, lake)
    assert first.totals() == {"files": 2, "rows_read": 7, "rows_lake": 2, "rows_quarantine": 2,
                              "rows_duplicate": 3}
    assert sorted(_quarantine_by_line(lake).values()) == ["conflicting_duplicate"] * 2
    # The first occurrence wins.
    assert [r[0] for r in _sql(lake, events_table("views"), "SELECT _src_line FROM {t} WHERE event_id = 'A'")] == [1]


def test_duplicate_across_batches(dirs):
    landing, lake = dirs
    schema = STREAMS["views"]
    a = valid_record(schema, 0, event_id="A")
    write_landing(landing, "views", [dumps(a)], seq=1)
    assert _ingest(landing, lake).totals()["rows_lake"] == 1
    write_landing(landing, "views", [dumps(a), dumps(dict(a, user_id=999))], seq=2)
    second = _ingest(landing, lake)
    assert second.totals() == {"files": 1, "rows_read": 2, "rows_lake": 0, "rows_quarantine": 1,
                               "rows_duplicate": 1}


def test_blank_lines_and_crlf(dirs):
    landing, lake = dirs
    schema = STREAMS["views"]
    rel = write_landing(landing, "views", [dumps(valid_record(schema, 0)) + "\r", "", dumps(valid_record(schema, 1))])
    report = _ingest(landing, lake)
    assert report.totals()["rows_read"] == 2 and report.totals()["rows_lake"] == 2
    assert rel in {f.file.rel_path for f in report.files}


def test_many_invalid_utf8_lines_each_found(dirs):
    landing, lake = dirs
    schema = STREAMS["views"]
    good = [dumps(valid_record(schema, i)) for i in range(6)]
    lines = [b"\xc3(", good[0].encode(), b"", good[1].encode(), b"\xff", b"\xe2\x82", good[2].encode(),
             "caf\u00e9 but not json".encode(), good[3].encode(), b"ok\xf0\x9f\x98"]
    write_landing(landing, "views", lines)
    report = _ingest(landing, lake)
    got = _quarantine_by_line(lake)
    assert {n: r for n, r in got.items() if r.endswith("invalid_utf8")} == {
        1: "malformed_json:invalid_utf8", 5: "malformed_json:invalid_utf8",
        6: "malformed_json:invalid_utf8", 10: "malformed_json:invalid_utf8",
    }
    assert got[8] == "malformed_json"  # valid UTF-8, not JSON
    assert report.totals()["rows_lake"] == 4 and report.totals()["rows_read"] == 9


def test_a_malformed_line_shaped_like_an_object_is_judged_line_by_line(dirs):
    """The fast validation parses lines shaped like '{...}' without checking them first; one that
    is not JSON after all makes its chunk go through the checked form, with the same judgement."""
    landing, lake = dirs
    schema = STREAMS["views"]
    lines = [dumps(valid_record(schema, 0)), '{"event_id": "x", "ts_ms": }', dumps(valid_record(schema, 2)),
             '{"event_id": "a"}}', b'{"event_id": "\xc3("}']
    write_landing(landing, "views", lines)
    write_landing(landing, "impressions", [dumps(valid_record(STREAMS["impressions"], 1))])
    report = _ingest(landing, lake)
    assert _quarantine_by_line(lake) == {2: "malformed_json", 4: "malformed_json", 5: "malformed_json:invalid_utf8"}
    assert report.totals()["rows_lake"] == 3 and report.totals()["rows_quarantine"] == 3
    # Only the views chunk needed the second pass: the clean impressions chunk took the fast one.
    assert report.checked_chunks == 1
