"""The one-parse validation SQL against the three-parse reference it replaced, line for line.

``validation_sql`` reads strings with a lax VARCHAR read and everything else as JSON fragments,
and derives types with string rules (``validate._field_value``); ``reference_validation_sql`` asks
``json_type`` for every field. Both run here on the same lines in real DuckDB: every field of every
stream given every awkward JSON value (numbers as strings, strings that look like numbers, NaN and
infinities by any name, huge and negative integers, reals, escapes, arrays, objects, null, absent,
duplicate keys), the fuzz corpus's nasty lines, and hypothesis' arbitrary JSON; the typed values,
the payload hash, the date and the reason must be the same on every row.

The speculative form (``speculative=True``: lines shaped like an object skip ``json_valid``) must
give the same rows too, or raise — and raise only when a line shaped like an object is not JSON.

So must the compiled path (``ingest/fastpath.py``), which types the plain valid lines itself and
leaves the rest to the SQL: its typed values, date and payload hash (and no reason) for the lines
it takes, the SQL's rows for the others. Every line is given in the producers' compact form too
(no blanks), which is what lets the compiled path keep a nested object's text as it is.
"""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import fuzz_settings
from tests.fuzz.test_ingest_fuzz import NASTY, json_values, record_lines
from tests.ingest.conftest import FLUSHED_AT_MS, valid_record
from tiktok_pipelines.ingest.fastpath import FastTyper, split_typed, ts_bounds
from tiktok_pipelines.ingest.validate import payload_hash_sql, reference_validation_sql, validation_sql
from tiktok_pipelines.schemas import STREAMS

SETTINGS = dict(future_skew_ms=300_000, max_lateness_ms=30 * 86_400_000, max_ts_ms=FLUSHED_AT_MS + 300_000)

# Raw JSON texts for a field's value: each is spliced into an otherwise valid record.
AWKWARD = [
    '"12"', '"-5"', '"1.5"', '"1e3"', '"true"', '"false"', '"null"', '"NaN"', '"nan"', '"inf"', '"Infinity"',
    '"-Infinity"', '"[1]"', '"{}"', '""', '" 7"', '"é"', '"x\\"y"', '"a\\\\b"', '"\\u0041"', '"\\/"', '"\\n"',
    '"\\u00e9t\\u00e9"', '"\\ud83d\\ude00"', '"foryou"', '"ForYou"', '"USD"', '"' + "x" * 300 + '"',
    "12", "-5", "0", "-0", "1.5", "1.0", "-0.0", "1e3", "1E3", "1e-400", "1e400", "-1e400", "5e-324",
    "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
    "18446744073709551615", "18446744073709551616", "99999999999999999999", "123456789.123456789",
    "NaN", "nan", "-NaN", "Infinity", "-Infinity", "inf", "Inf", "infinity", "INF",
    "true", "false", "null", "[]", "[1, 2]", '["a"]', "{}", '{"k": 1}', '{"k": {"n": [1, "x"]}}',
    # Compact objects (what the compiled path keeps as text, when the SQL's parser would write the
    # same): numbers in and out of the writer's form, strings, nesting, repeated keys.
    '{"a":1}', '{"a":-1}', '{"a":-0}', '{"a":0}', '{"a":1.0}', '{"a":100.0}', '{"a":0.0}', '{"a":-0.0}',
    '{"a":1.50}', '{"a":1.5}', '{"a":-1.5}', '{"a":0.5}', '{"a":0.08}', '{"a":3997.9}', '{"a":99.99}',
    '{"a":0.000001}', '{"a":0.0000012}', '{"a":0.0000001}', '{"a":1e5}', '{"a":1E2}', '{"a":1e-7}',
    '{"a":123456789012345.6}', '{"a":12345678901234.5}', '{"a":0.30000000000000004}', '{"a":0.1}',
    '{"a":5e-324}', '{"a":1e400}', '{"a":123456789012345678}', '{"a":12345678901234567890}',
    '{"a":"x"}', '{"a":"\u00e9"}', '{"a":"é"}', '{"a":"\n"}', '{"a":[1,2.5,{"b":null}]}', '{"a":[]}',
    '{"a":{}}', '{"a":true,"a":false}', '{"a":{"b":[[[]]]}}', '{"a":NaN}', '{"a":01}', '{"a":1.}', '{"a" :1}',
    '{"a":1 }', '{"age_band":"45-54","video_age_h":3997.9,"video_ctr":0.08,"trending_tag":false}',
]


def _lines_table(lines: list[bytes]) -> pa.Table:
    return pa.table({
        "src_file_idx": pa.array(np.zeros(len(lines), np.int32)),
        "src_line": pa.array(np.arange(1, len(lines) + 1, dtype=np.int64)),
        "line": pa.array(lines, pa.large_binary()).cast(pa.large_string()),
    })


def _compiled_rows(schema, lines: pa.Table) -> tuple[pa.Table, int]:
    """What the engine's validation gives with the compiled path: its typed lines (values, date,
    payload hash, no reason) and the SQL's rows for the lines it leaves; and how many it typed."""
    typed, deferred = split_typed(FastTyper(schema), lines, [ts_bounds(FLUSHED_AT_MS, **SETTINGS)], threads=2)
    con = duckdb.connect()
    con.register("typed_lines", typed)
    con.register("lines", deferred)
    con.register("files", pa.table({"src_file_idx": pa.array([0], pa.int32()), "flushed_at_ms": [FLUSHED_AT_MS]}))
    out = con.sql(
        f"SELECT src_file_idx, src_line, {', '.join(schema.field_names)}, event_date, {payload_hash_sql(schema)}, "
        f"NULL::VARCHAR AS reason FROM typed_lines UNION ALL SELECT * FROM ({validation_sql(schema, **SETTINGS)})"
    ).to_arrow_table()
    con.close()
    return out, typed.num_rows


def _run(lines: list[bytes], streams: tuple[str, ...] = tuple(STREAMS)) -> tuple[list, list]:
    """(reference rows, other rows) per stream, for ``lines`` put in each of ``streams``: the
    rows only the reference gives, and those only one of the other forms gives."""
    con = duckdb.connect()
    table = _lines_table(lines)
    con.register("lines", table)
    con.register("files", pa.table({"src_file_idx": pa.array([0], pa.int32()), "flushed_at_ms": [FLUSHED_AT_MS]}))
    ref, fast = [], []
    # A line shaped like an object (what the speculative form parses unchecked) that is not JSON.
    shaped_but_malformed = con.sql(
        "SELECT count(*) FROM lines WHERE starts_with(line, '{') AND (ends_with(line, E'}\\n') "
        "OR ends_with(line, '}')) AND NOT json_valid(line)").fetchall()[0][0] > 0
    for schema in (STREAMS[name] for name in streams):
        # EXCEPT ALL both ways: NULL and NaN compare equal to themselves here, as they must.
        a = f"({reference_validation_sql(schema, **SETTINGS)})"
        compiled, _ = _compiled_rows(schema, table)
        con.register("compiled", compiled)
        forms = [f"({validation_sql(schema, speculative=speculative, **SETTINGS)})" for speculative in (False, True)]
        for b in forms + ["compiled"]:
            try:
                ref += con.sql(f"SELECT '{schema.name}', * FROM {a} EXCEPT ALL SELECT '{schema.name}', * FROM {b}").fetchall()
                fast += con.sql(f"SELECT '{schema.name}', * FROM {b} EXCEPT ALL SELECT '{schema.name}', * FROM {a}").fetchall()
            except (duckdb.InvalidInputException, UnicodeDecodeError):
                # Only the speculative form may raise, and only for such a line.
                assert b == forms[1] and shaped_but_malformed
        con.unregister("compiled")
    con.close()
    return ref, fast


def _spliced(schema, name: str, raw: str, i: int, compact: bool = False) -> bytes:
    rec = valid_record(schema, i, event_id=f"e-{i}")
    marker = "\x00VALUE\x00"
    rec[name] = marker
    seps = (",", ":") if compact else None
    return json.dumps(rec, ensure_ascii=False, separators=seps).replace(json.dumps(marker), raw).encode()


def test_every_field_with_every_awkward_value():
    lines: list[bytes] = []
    for schema in STREAMS.values():
        for f in schema.fields:
            for raw in AWKWARD:
                lines.append(_spliced(schema, f.name, raw, len(lines)))
                lines.append(_spliced(schema, f.name, raw, len(lines), compact=True))
        # Duplicate keys: the first one counts, in both.
        rec = json.dumps(valid_record(schema, 1))
        lines.append(("{" + f'"user_id": "7", ' + rec[1:]).encode())
        lines.append((rec[:-1] + ', "user_id": "7"}').encode())
        lines.append((" \t" + rec).encode())  # indented: still an object
        compact = json.dumps(valid_record(schema, 2), separators=(",", ":"))
        lines += [compact.encode(), (compact + " \r").encode(), compact[:-1].encode(), (compact + "x").encode(),
                  compact.replace('":', '" :', 1).encode(), ("{" + compact[1:].replace(",", " ,", 2)).encode()]
    ref, fast = _run(lines)
    assert ref == [] and fast == []
    # The compiled path took a good share of them (the valid ones in every field's plain form).
    typed = sum(_compiled_rows(schema, _lines_table(lines))[1] for schema in STREAMS.values())
    assert typed > len(lines) // 20
    # The rules were exercised: the reference itself judged these lines many different ways.
    con = duckdb.connect()
    con.register("lines", pa.table({"src_file_idx": pa.array(np.zeros(len(lines), np.int32)),
                                    "src_line": pa.array(np.arange(1, len(lines) + 1)),
                                    "line": pa.array([x.decode() for x in lines], pa.large_string())}))
    con.register("files", pa.table({"src_file_idx": pa.array([0], pa.int32()), "flushed_at_ms": [FLUSHED_AT_MS]}))
    reasons = {r[0].split(":")[0] for r in con.sql(
        f"SELECT DISTINCT coalesce(reason, 'valid') FROM ({validation_sql(STREAMS['views'], **SETTINGS)})").fetchall()}
    assert {"valid", "wrong_type", "missing_field", "unknown_enum", "out_of_range", "oversized_string"} <= reasons


def test_nasty_lines():
    ref, fast = _run([x for x in NASTY if _utf8(x)])
    assert ref == [] and fast == []


def test_lines_that_are_not_utf8_are_malformed_without_an_error():
    """The engine checks UTF-8 only of the lines the parser refuses, so these reach the SQL."""
    bad = [b"\xff\xfe", b" \xc3\x28", b"\t\xed\xa0\x80{", b'{"event_id": "\xff"}', b"\x80", b'["\xff"]']
    con = duckdb.connect()
    con.register("lines", pa.table({
        "src_file_idx": pa.array(np.zeros(len(bad), np.int32)),
        "src_line": pa.array(np.arange(1, len(bad) + 1, dtype=np.int64)),
        "line": pa.array(bad, pa.large_binary()).cast(pa.large_string(), safe=False),
    }))
    con.register("files", pa.table({"src_file_idx": pa.array([0], pa.int32()), "flushed_at_ms": [FLUSHED_AT_MS]}))
    for schema in STREAMS.values():
        got = con.sql(f"SELECT reason FROM ({validation_sql(schema, **SETTINGS)})").fetchall()
        assert got == [("malformed_json",)] * len(bad)


def _utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


@fuzz_settings(30)
@given(st.lists(st.one_of(
    record_lines("views"), record_lines("impressions"), record_lines("ad_events"), record_lines("interactions"),
    st.builds(lambda v: json.dumps(v).encode(), json_values),
), min_size=1, max_size=40))
def test_fuzzed_records(lines):
    ref, fast = _run([x for x in lines if _utf8(x)])
    assert ref == [] and fast == []


def _compact(line: bytes) -> bytes:
    """The same record as a compact producer writes it (no blanks)."""
    return json.dumps(json.loads(line), separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")


@fuzz_settings(20)
@given(st.lists(st.one_of(record_lines("views"), record_lines("impressions"), record_lines("ad_events"),
                          record_lines("interactions"), record_lines("live_gifts"), record_lines("orders")),
                min_size=1, max_size=40))
def test_fuzzed_compact_records(lines):
    ref, fast = _run([_compact(x) for x in lines if _utf8(x)])
    assert ref == [] and fast == []


_NUMBER_FORMS = {
    "shortest": repr, "15 digits": lambda v: f"{v:.15g}", "17 digits": lambda v: f"{v:.17g}",
    "exponent": lambda v: f"{v:e}", "6 decimals": lambda v: f"{v:.6f}", "1 decimal": lambda v: f"{v:.1f}",
}


@fuzz_settings(25)
@given(st.lists(st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**70), 2**70)),
                min_size=1, max_size=15),
       st.sampled_from(sorted(_NUMBER_FORMS)))
def test_numbers_in_every_form(values, form):
    """Reals and integers as producers write them, in a real field and inside an object: the
    compiled path's conversions and its judgement of the parser's own form against the SQL's."""
    lines = []
    for v in values:
        raw = str(v) if isinstance(v, int) else _NUMBER_FORMS[form](v)
        for schema in (STREAMS["impressions"], STREAMS["ad_events"]):
            for f in schema.fields:
                if f.type == "float64":
                    lines.append(_spliced(schema, f.name, raw, len(lines), compact=True))
                if f.type == "json_object":
                    lines.append(_spliced(schema, f.name, f'{{"x":{raw},"y":[{raw},"s"]}}', len(lines), compact=True))
                if f.type == "int64" and f.name != "ts_ms":
                    lines.append(_spliced(schema, f.name, raw, len(lines), compact=True))
    ref, fast = _run(lines, ("impressions", "ad_events"))
    assert ref == [] and fast == []


def test_a_buffer_past_the_view_offset_limit_is_typed_in_pieces(monkeypatch):
    """A string view's offset is an int32, so lines over 1 GiB are typed in pieces; here the limit
    is lowered to a few lines' bytes, and the pieces must give what one pass gives."""
    import tiktok_pipelines.ingest.fastpath as fastpath

    schema = STREAMS["impressions"]
    lines = []
    for i in range(60):
        rec = valid_record(schema, i)
        lines.append(json.dumps(rec, separators=(",", ":")).encode() if i % 7 else json.dumps(rec).encode())
        if i % 9 == 0:
            lines.append(b'{"event_id": "broken"')  # deferred, in between
    array = _lines_table(lines).column("line").chunk(0)
    typer = FastTyper(schema)
    bounds = ts_bounds(FLUSHED_AT_MS, **SETTINGS)
    rows, cols, deferred = typer.type_array(array, *bounds)
    assert len(rows) > 40 and len(deferred) >= 7
    monkeypatch.setattr(fastpath, "_MAX_VIEW_BYTES", 2_000)
    assert sum(len(line) for line in lines) > 8 * fastpath._MAX_VIEW_BYTES  # several levels of halving
    rows2, cols2, deferred2 = typer.type_array(array, *bounds)
    assert rows2.tolist() == rows.tolist() and deferred2.tolist() == deferred.tolist()
    for name, values in cols.items():
        assert cols2[name].to_pylist() == values.to_pylist(), name
    # A line over the limit on its own (a file with no newline) is deferred, not halved forever.
    monkeypatch.setattr(fastpath, "_MAX_VIEW_BYTES", 300)
    rows3, _, deferred3 = typer.type_array(array, *bounds)
    short = [i for i in rows.tolist() if len(lines[i]) < 300]
    assert 0 < len(short) < len(rows) and rows3.tolist() == short
    assert deferred3.tolist() == sorted(set(range(len(lines))) - set(short))
