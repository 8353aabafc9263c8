"""SQL that types and validates landing lines, generated from ``schemas.STREAMS``.

Why SQL: DuckDB parses JSON and checks every field vectorised in C++, millions of lines per second;
a Python loop per line would be ~50x slower (DESIGN.md, decision 2). Each line is parsed once, with
every field kept as a JSON fragment, so the checks can tell a missing field from a mistyped one:
``json_transform`` alone would silently coerce ``"12"`` or ``1.5`` into an integer.

The query reads a relation ``lines(src_file_idx, src_line, line)`` plus ``files(src_file_idx,
flushed_at_ms)`` and yields one row per line: the typed columns, ``event_date``, ``payload_hash``
(hash of the typed values: equal hashes mean an exact duplicate) and ``reason`` (NULL when valid).
"""

from __future__ import annotations

import json

from tiktok_pipelines.schemas import BOOL, FLOAT64, INT64, JSON_OBJECT, STRING, Field, StreamSchema

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


def validation_sql(
    schema: StreamSchema,
    *,
    future_skew_ms: int,
    max_lateness_ms: int,
    max_ts_ms: int | None = None,
) -> str:
    """A SELECT over ``lines``/``files`` that types every line and names the first failed rule.

    Two vectorised reads of each line: ``json_transform`` to the target types (fast, but lax: it
    would turn "12" or 1.5 into an integer), and ``json_type`` of every field (the strict JSON
    types, as short inlined strings). A value is kept only where its JSON type is accepted, so the
    laxness never leaks through. A field is *present* when its key exists and is not JSON null.

    ``max_ts_ms``: the ingest's clock + skew. An event later than it is a ``future_timestamp``
    whatever its file's flush time says (a file's name is the collector's word, not a fact).
    """
    structure = json.dumps({f.name: sql_type(f) for f in schema.fields})
    names = schema.field_names
    paths = "[" + ", ".join(_quote(f"$.{n}") for n in names) + "]"
    typed: list[str] = []
    checks: list[str] = []
    for i, f in enumerate(schema.fields, start=1):
        jt = f"jt[{i}]"
        accepted = ", ".join(_quote(t) for t in _ACCEPTED_JSON_TYPES[f.type])
        # A UBIGINT past int64 comes back NULL from the typed read: it counts as the wrong type.
        typed.append(f"CASE WHEN {jt} IN ({accepted}) THEN v.{f.name} END AS {f.name}")
        present = f"({jt} IS NOT NULL AND {jt} <> 'NULL')"
        if f.required:
            checks.append(f"WHEN NOT {present} THEN 'missing_field:{f.name}'")
        checks.append(f"WHEN {present} AND {f.name} IS NULL THEN 'wrong_type:{f.name}'")
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
    check_sql = "\n            ".join(checks)
    hash_args = ", ".join(names)
    return f"""
WITH checked AS (
    SELECT src_file_idx, src_line, line,
           -- json_valid first: guarding with try() instead would fall back to row-at-a-time for
           -- every vector holding one malformed line, and with dirty data that is most vectors.
           json_valid(line) AS is_json,
           -- json_transform also "parses" arrays and scalars, into an all-NULL struct. Nearly every
           -- line starts with its brace: only the others pay for ltrim's copy of the line.
           CASE WHEN starts_with(line, '{{') THEN true
                ELSE starts_with(ltrim(line, E' \\t\\r'), '{{') END AS is_object
    FROM lines
), parsed AS (
    SELECT src_file_idx, src_line, is_json, is_object,
           CASE WHEN is_json THEN json_type(line, {paths}) END AS jt,
           CASE WHEN is_json THEN json_transform(line, {_quote(structure)}) END AS v
    FROM checked
), typed AS (
    SELECT src_file_idx, src_line, is_json, is_object, jt, {", ".join(typed)} FROM parsed
)
SELECT t.src_file_idx, t.src_line,
       {", ".join("t." + n for n in names)},
       -- epoch_ms gives a naive UTC timestamp; the range guard keeps a wild value from aborting the batch
       CASE WHEN t.{ts} BETWEEN 0 AND 253402300799999 THEN CAST(epoch_ms(t.{ts}) AS DATE) END AS event_date,
       -- 63 bits as BIGINT: Delta (and most engines) have no unsigned 64-bit type.
       (hash({hash_args}) >> 1)::BIGINT AS payload_hash,
       CASE
            WHEN NOT is_json THEN 'malformed_json'
            WHEN NOT is_object THEN 'not_an_object'
            {check_sql}
       END AS reason
FROM typed t JOIN files fl USING (src_file_idx)
"""
