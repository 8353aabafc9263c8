"""SQL that types and validates landing lines, generated from ``schemas.STREAMS``.

Why SQL: DuckDB parses JSON and checks every field vectorised in C++, millions of lines per second;
a Python loop per line would be ~50x slower (DESIGN.md, decision 2). Each line is parsed once, with
every non-string field kept as a JSON fragment, so the checks can tell a missing field from a
mistyped one: ``json_transform`` to the target types alone would silently coerce ``"12"`` or
``1.5`` into an integer.

The query reads a relation ``lines(src_file_idx, src_line, line)`` plus ``files(src_file_idx,
flushed_at_ms)`` and yields one row per line: the typed columns, ``event_date``, ``payload_hash``
(hash of the typed values: equal hashes mean an exact duplicate) and ``reason`` (NULL when valid).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from tiktok_pipelines.sqlfiles import load_sql
from tiktok_pipelines.schemas import BOOL, FLOAT64, INT64, JSON_OBJECT, STREAMS, STRING, Field, StreamSchema

_PKG = "tiktok_pipelines.ingest"  # the query templates: ingest/sql/validation*.sql
_SQL_TYPES = {STRING: "VARCHAR", INT64: "BIGINT", FLOAT64: "DOUBLE", BOOL: "BOOLEAN", JSON_OBJECT: "JSON"}


def sql_type(field: Field) -> str:
    return _SQL_TYPES[field.type]


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


# JSON types (as json_type names them) that each field type accepts. Strict: "12" is a VARCHAR, not
# an integer, and 1.5 is a DOUBLE.
_ACCEPTED_JSON_TYPES = {
    STRING: ("VARCHAR",),
    INT64: ("BIGINT", "UBIGINT"),
    FLOAT64: ("DOUBLE", "BIGINT", "UBIGINT"),
    BOOL: ("BOOLEAN",),
    JSON_OBJECT: ("OBJECT",),
}


# How each field is read by the one json_transform: strings as VARCHAR (the lax read gives the
# characters; json_type settles the rare value a non-string could have become), everything else as
# its JSON fragment (the first character names the JSON type).
_READ_AS = {STRING: "VARCHAR", INT64: "JSON", FLOAT64: "JSON", BOOL: "JSON", JSON_OBJECT: "JSON"}

# The lax VARCHAR read of a number, boolean, array or object starts with a digit, '-', '[' or '{',
# or is one of these (any case: the parser takes NaN and infinities by name). Any other text was a
# JSON string.
_NON_STRING_WORDS = ("true", "false", "nan", "inf", "infinity")
_NON_STRING_FIRST = tuple(ord(c) for c in "-0123456789[{")


def _field_value(field: Field, x: str) -> str:
    """The field's typed value from ``x``, its read as ``_READ_AS`` says: NULL unless the value's
    JSON type is one the field accepts.

    A fragment is the parser's own rewrite of the value, never the raw text: no blanks, integers
    as plain digits, reals always with a '.' or an exponent (or as their raw text when they
    overflow, NaN and infinities by name), objects as '{...}'. tests/ingest/test_fast_validation.py
    holds every rule here to ``reference_validation_sql``.
    """
    if field.type == STRING:
        first = ", ".join(str(c) for c in _NON_STRING_FIRST)
        words = ", ".join(_quote(w) for w in _NON_STRING_WORDS)
        exact = f"CASE WHEN json_type(line, {_quote('$.' + field.name)}) = 'VARCHAR' THEN {x} END"
        return (f"CASE WHEN {x} IS NULL THEN NULL WHEN ascii({x}) IN ({first}) THEN {exact} "
                f"WHEN length({x}) > 8 THEN {x} WHEN lower({x}) IN ({words}) THEN {exact} ELSE {x} END")
    if field.type == INT64:
        # Digits only: DuckDB's own cast would take '1.5', '1e3' and '1_000'. A plain integer
        # past int64 (json_type: UBIGINT or DOUBLE) fails the cast: the wrong type, as before.
        return (f"CASE WHEN NOT (contains({x}, '.') OR contains({x}, 'e') OR contains({x}, 'E')) "
                f"THEN TRY_CAST({x}::VARCHAR AS BIGINT) END")
    if field.type == FLOAT64:
        # Any JSON number (integers too); a string, object, array or boolean never. The cast
        # parses what the parser wrote, so it lands on the same double (correctly rounded both
        # ways; overflow is an infinity both ways).
        return (f"CASE WHEN NOT (starts_with({x}, '\"') OR starts_with({x}, '{{') OR starts_with({x}, '[') "
                f"OR {x} IN ('true', 'false')) THEN TRY_CAST({x}::VARCHAR AS DOUBLE) END")
    if field.type == BOOL:
        return f"CASE {x}::VARCHAR WHEN 'true' THEN true WHEN 'false' THEN false END"
    if field.type == JSON_OBJECT:
        return f"CASE WHEN starts_with({x}, '{{') THEN {x} END"
    raise AssertionError(field.type)


def _checks(schema: StreamSchema, present: Callable[[int, Field], str], *, future_skew_ms: int,
            max_lateness_ms: int, max_ts_ms: int | None) -> str:
    """The CASE branches naming a valid-JSON object's first failed rule, in field order."""
    checks: list[str] = []
    for i, f in enumerate(schema.fields, start=1):
        p = present(i, f)
        if f.required:
            checks.append(f"WHEN NOT {p} THEN 'missing_field:{f.name}'")
        checks.append(f"WHEN {p} AND {f.name} IS NULL THEN 'wrong_type:{f.name}'")
        if f.enum is not None:
            allowed = ", ".join(_quote(v) for v in f.enum)
            checks.append(f"WHEN {f.name} NOT IN ({allowed}) THEN 'unknown_enum:{f.name}'")
        if f.min_value is not None:
            checks.append(f"WHEN {f.name} < {f.min_value!r} THEN 'out_of_range:{f.name}'")
        if f.type in (STRING, JSON_OBJECT):
            checks.append(
                f"WHEN length({f.name}::VARCHAR) > {f.max_chars} THEN 'oversized_string:{f.name}'"
            )
    ts = schema.partition_field
    future_limit = f"fl.flushed_at_ms + {future_skew_ms}"
    if max_ts_ms is not None:
        future_limit = f"least({future_limit}, {int(max_ts_ms)})"
    checks.append(f"WHEN {ts} > {future_limit} THEN 'future_timestamp'")
    checks.append(f"WHEN {ts} < fl.flushed_at_ms - {max_lateness_ms} THEN 'stale_timestamp'")
    # A date the lake can name (year 1970-9999); only a flush time past 9999 could let one through.
    checks.append(f"WHEN {ts} NOT BETWEEN 0 AND 253402300799999 THEN 'out_of_range:{ts}'")
    return "\n            ".join(checks)


def _final_select(schema: StreamSchema, check_sql: str) -> str:
    names = schema.field_names
    return load_sql(_PKG, "validation_final", columns=", ".join("t." + n for n in names),
                    ts=schema.partition_field, payload_hash=payload_hash_sql(schema), checks=check_sql)


def _checked_cte(speculative: bool) -> str:
    return load_sql(_PKG, "validation_speculative" if speculative else "validation_checked").rstrip()


def validation_sql(
    schema: StreamSchema,
    *,
    future_skew_ms: int,
    max_lateness_ms: int,
    max_ts_ms: int | None = None,
    speculative: bool = False,
) -> str:
    """A SELECT over ``lines``/``files`` that types every line and names the first failed rule.

    One vectorised parse of each line: ``json_transform`` to a struct with one member per field,
    read as ``_READ_AS`` says (NULL when the key is absent or its value is JSON null: not
    *present*). Each field's typed value and strict JSON type come from that read with string
    functions (``_field_value``); only a string field whose text a non-string could have produced
    asks ``json_type``, for that row. So the laxness of a typed transform never leaks through.

    It replaced ``reference_validation_sql`` (``json_type`` of every field plus a typed
    ``json_transform``: three parses of each line with ``json_valid``), which it matches row for
    row at ~85% of the CPU (1M events, all streams; docs/ingestion.md).

    ``max_ts_ms``: the ingest's clock + skew. An event later than it is a ``future_timestamp``
    whatever its file's flush time says (a file's name is the collector's word, not a fact).

    ``speculative``: lines shaped like an object are parsed without ``json_valid`` first
    (``ingest/sql/validation_speculative.sql``). The query then either gives exactly the checked form's rows or
    raises (a malformed line shaped like an object): run the checked form then.
    """
    structure = json.dumps({f.name: _READ_AS[f.type] for f in schema.fields})
    typed = ", ".join(f"j.{f.name} IS NOT NULL AS _p{i}" for i, f in enumerate(schema.fields, start=1))
    values = ", ".join(f"{_field_value(f, f'j.{f.name}')} AS {f.name}" for f in schema.fields)
    check_sql = _checks(schema, lambda i, f: f"_p{i}", future_skew_ms=future_skew_ms,
                        max_lateness_ms=max_lateness_ms, max_ts_ms=max_ts_ms)
    return load_sql(_PKG, "validation", checked_cte=_checked_cte(speculative), structure=_quote(structure),
                    presence=typed, values=values, final_select=_final_select(schema, check_sql))


def payload_hash_sql(schema: StreamSchema, prefix: str = "") -> str:
    """The payload hash of a row of typed columns: equal hashes mean an exact duplicate."""
    # 63 bits as BIGINT: Delta (and most engines) have no unsigned 64-bit type.
    return f"(hash({', '.join(prefix + n for n in schema.field_names)}) >> 1)::BIGINT AS payload_hash"


def reference_validation_sql(
    schema: StreamSchema,
    *,
    future_skew_ms: int,
    max_lateness_ms: int,
    max_ts_ms: int | None = None,
) -> str:
    """The first form of ``validation_sql``, kept as the reference the fast form is tested
    against (tests/ingest/test_fast_validation.py): same rows, same values, same reasons.

    Two vectorised reads of each line: ``json_transform`` to the target types (fast, but lax: it
    would turn "12" or 1.5 into an integer), and ``json_type`` of every field (the strict JSON
    types, as short inlined strings). A value is kept only where its JSON type is accepted, so the
    laxness never leaks through. A field is *present* when its key exists and is not JSON null.
    """
    structure = json.dumps({f.name: sql_type(f) for f in schema.fields})
    paths = "[" + ", ".join(_quote(f"$.{n}") for n in schema.field_names) + "]"
    typed: list[str] = []
    for i, f in enumerate(schema.fields, start=1):
        accepted = ", ".join(_quote(t) for t in _ACCEPTED_JSON_TYPES[f.type])
        # A UBIGINT past int64 comes back NULL from the typed read: it counts as the wrong type.
        typed.append(f"CASE WHEN jt[{i}] IN ({accepted}) THEN v.{f.name} END AS {f.name}")
    check_sql = _checks(schema, lambda i, f: f"(jt[{i}] IS NOT NULL AND jt[{i}] <> 'NULL')",
                        future_skew_ms=future_skew_ms, max_lateness_ms=max_lateness_ms, max_ts_ms=max_ts_ms)
    return load_sql(_PKG, "validation_reference", checked_cte=_checked_cte(False), paths=paths,
                    structure=_quote(structure), values=", ".join(typed),
                    final_select=_final_select(schema, check_sql))


def rendered_validation(future_skew_ms: int, max_lateness_ms: int) -> dict[str, str]:
    """``<stream>.sql`` -> the validation query each stream runs (the speculative form, as the
    engine tries it first), for reading and review: ``sql/ingest_validation/`` holds this for the
    default settings, and tests/ingest/test_validation_rendered.py keeps it fresh."""
    out = {}
    for name, schema in STREAMS.items():
        head = (f"-- GENERATED by `python -m tiktok_pipelines.ingest.validate` from schemas.STREAMS['{name}']\n"
                f"-- and ingest/sql/validation*.sql, with the default settings: future skew {future_skew_ms} ms,\n"
                f"-- lateness {max_lateness_ms} ms (the ingest also caps timestamps at its clock + skew).\n"
                "-- Do not edit: change the schema or the templates and regenerate.\n")
        out[f"{name}.sql"] = head + validation_sql(schema, future_skew_ms=future_skew_ms,
                                                   max_lateness_ms=max_lateness_ms, speculative=True).strip() + "\n"
    return out


def _write_rendered() -> None:
    from pathlib import Path

    from tiktok_pipelines.ingest.engine import IngestSettings

    s = IngestSettings()
    out = Path(__file__).resolve().parents[2] / "sql" / "ingest_validation"
    out.mkdir(parents=True, exist_ok=True)
    for name, text in rendered_validation(s.future_skew_seconds * 1000, s.max_lateness_days * 86_400_000).items():
        (out / name).write_text(text, encoding="utf-8")
        print(out / name)


if __name__ == "__main__":
    _write_rendered()
