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


def _typed_value(field: Field, frag: str) -> str:
    """Typed value from a JSON fragment, or NULL when the JSON type is wrong (or the value absent)."""
    if field.type == STRING:
        # Fast path: a string without escapes is its fragment minus the quotes.
        return (
            f"CASE WHEN starts_with({frag}, '\"') THEN "
            f"CASE WHEN contains({frag}, '\\') THEN json_extract_string({frag}, '$') "
            f"ELSE {frag}[2:-2] END END"
        )
    if field.type == INT64:
        # A JSON integer has no fraction or exponent; TRY_CAST alone would round 1.5 and accept 1e3.
        return f"CASE WHEN NOT regexp_matches({frag}, '[.eE]') THEN TRY_CAST({frag} AS BIGINT) END"
    if field.type == FLOAT64:
        return f"CASE WHEN NOT starts_with({frag}, '\"') THEN TRY_CAST({frag} AS DOUBLE) END"
    if field.type == BOOL:
        return f"CASE WHEN {frag} IN ('true', 'false') THEN {frag} = 'true' END"
    if field.type == JSON_OBJECT:
        return f"CASE WHEN starts_with({frag}, '{{') THEN {frag}::JSON END"
    raise ValueError(f"unknown field type {field.type!r}")


def validation_sql(
    schema: StreamSchema,
    *,
    future_skew_ms: int,
    max_lateness_ms: int,
) -> str:
    """A SELECT over ``lines``/``files`` that types every line and names the first failed rule.

    Stages: parse each line once into JSON fragments per field; type each fragment once; then
    check the typed values. A field is *present* when its key exists and is not JSON null; a
    present field whose typed value is NULL had the wrong JSON type.
    """
    structure = json.dumps({f.name: "JSON" for f in schema.fields})
    names = schema.field_names
    frags = ", ".join(f"j.{n}::VARCHAR AS {n}__j" for n in names)
    typed = ", ".join(f"{_typed_value(f, f'{f.name}__j')} AS {f.name}" for f in schema.fields)
    checks: list[str] = []
    for f in schema.fields:
        present = f"({f.name}__j IS NOT NULL AND {f.name}__j <> 'null')"
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
    checks.append(f"WHEN {ts} > fl.flushed_at_ms + {future_skew_ms} THEN 'future_timestamp'")
    checks.append(f"WHEN {ts} < fl.flushed_at_ms - {max_lateness_ms} THEN 'stale_timestamp'")
    check_sql = "\n            ".join(checks)
    hash_args = ", ".join(names)
    return f"""
WITH parsed AS (
    SELECT src_file_idx, src_line,
           try(json_transform(line, {_quote(structure)})) AS j,
           -- json_transform also "parses" arrays and scalars, into an all-NULL struct
           starts_with(ltrim(line, E' \\t\\r'), '{{') AS is_object
    FROM lines
), fragments AS (
    SELECT src_file_idx, src_line, j IS NULL AS is_malformed, is_object, {frags}
    FROM parsed
), typed AS (
    SELECT *, {typed} FROM fragments
)
SELECT t.src_file_idx, t.src_line,
       {", ".join("t." + n for n in names)},
       -- epoch_ms gives a naive UTC timestamp; the range guard keeps a wild value from aborting the batch
       CASE WHEN t.{ts} BETWEEN 0 AND 253402300799999 THEN CAST(epoch_ms(t.{ts}) AS DATE) END AS event_date,
       hash({hash_args}) AS payload_hash,
       CASE
            WHEN is_malformed THEN 'malformed_json'
            WHEN NOT is_object THEN 'not_an_object'
            {check_sql}
       END AS reason
FROM typed t JOIN files fl USING (src_file_idx)
"""
