"""Dirty, late and duplicated records, as real collectors deliver them.

Selection is vectorised per (stream, part, day): a dirty record *replaces* the clean event it was
made from (the event is lost to the pipeline, as it would be), duplicates are *extra* copies of a
clean record, late records are clean records delivered one or more windows after their own.
Kinds that a typed frame can hold (negative numbers, unknown enum values, oversized strings, wrong
timestamps) are applied in the frame; the rest (wrong JSON types, missing keys, broken JSON) are
applied line by line when the file is written, which touches only the dirty few.

Every kind is detectable from the line plus the file's flush time (see ``expected_reason``).
"""

from __future__ import annotations

import json
import random

import numpy as np
import polars as pl

from tiktok_pipelines import schemas
from tiktok_pipelines.simulator import text
from tiktok_pipelines.simulator.rng import rng_for
from tiktok_pipelines.simulator.world import DAY_MS, HOUR_MS

KINDS = (
    "clean", "late", "exact_duplicate", "conflicting_duplicate", "malformed_json", "not_an_object",
    "missing_field", "wrong_type", "unknown_enum", "out_of_range", "oversized_string",
    "future_timestamp", "stale_timestamp",
)
K = {k: i for i, k in enumerate(KINDS)}
DIRTY_KINDS = KINDS[2:]
# Kinds rewritten line by line at write time.
LINE_KINDS = frozenset(K[k] for k in ("malformed_json", "not_an_object", "missing_field", "wrong_type"))
FIELD_KINDS = frozenset(("missing_field", "wrong_type", "unknown_enum", "out_of_range", "oversized_string"))

DEFAULT_DIRTY_WEIGHTS: dict[str, float] = {
    "exact_duplicate": 0.14, "conflicting_duplicate": 0.04, "malformed_json": 0.12, "not_an_object": 0.03,
    "missing_field": 0.12, "wrong_type": 0.12, "unknown_enum": 0.10, "out_of_range": 0.10,
    "oversized_string": 0.08, "future_timestamp": 0.08, "stale_timestamp": 0.07,
}

# Fields each kind may break, per stream. Negative numbers go into durations, amounts and ids.
OUT_OF_RANGE_FIELDS = {
    "impressions": ("position", "video_id"), "views": ("watch_time_ms", "video_duration_ms"),
    "interactions": ("creator_id",), "ad_events": ("advertiser_id", "campaign_id"),
    "live_gifts": ("gift_count", "value_cents"), "orders": ("quantity", "amount_cents"),
}
OVERSIZE_FIELDS = {
    "impressions": ("model_version",), "views": ("session_id",), "interactions": ("comment_text",),
    "ad_events": ("event_id",), "live_gifts": ("gift_type", "stream_id"), "orders": ("order_id",),
}
# A conflicting duplicate keeps event_id and ts_ms (so it lands on the same date) and changes this.
CONFLICT_FIELDS = {
    "impressions": "position", "views": "watch_time_ms", "interactions": "creator_id",
    "ad_events": "advertiser_id", "live_gifts": "gift_count", "orders": "quantity",
}
MAX_LATE_MS = 3 * HOUR_MS
MAX_DUP_DELAY_WINDOWS = 4
_FILLER = "so good!! " * 400  # an over-long comment, as a spammy client might send


def field_choices(stream: str, kind: str) -> tuple[str, ...]:
    schema = schemas.STREAMS[stream]
    if kind in ("missing_field", "wrong_type"):
        return tuple(f.name for f in schema.fields if f.required)
    if kind == "unknown_enum":
        return tuple(f.name for f in schema.fields if f.required and f.enum)
    if kind == "out_of_range":
        return OUT_OF_RANGE_FIELDS[stream]
    if kind == "oversized_string":
        return OVERSIZE_FIELDS[stream]
    return ()


def expected_reason(kind: str, field: str | None) -> str | None:
    """The quarantine reason ingestion should give (None: valid; 'duplicate': dropped)."""
    if kind in ("clean", "late"):
        return None
    if kind == "exact_duplicate":
        return "duplicate"
    if kind in FIELD_KINDS:
        return f"{kind}:{field}"
    return kind


def kind_weights(stream: str, weights: dict[str, float]) -> np.ndarray:
    w = np.array([weights.get(k, 0.0) if (k not in FIELD_KINDS or field_choices(stream, k)) else 0.0
                  for k in DIRTY_KINDS], dtype=np.float64)
    return w / w.sum() if w.sum() > 0 else w


def _scatter(df: pl.DataFrame, col: str, idx: np.ndarray, values) -> pl.DataFrame:
    s = df.get_column(col).clone()
    s.scatter(idx, values)
    return df.with_columns(s)


DROPPED = 255  # a clean row whose event was turned into a dirty copy: never written


def inject(df: pl.DataFrame, *, stream: str, seed: int, part: str, day: int, dirty_rate: float,
           late_rate: float, weights: dict[str, float], batch_ms: int) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Mark and make dirty / late / duplicate records: ``(base, extras)``, both with the internal
    columns ``_kind, _field, _aux, _delay``.

    The big frame is never rewritten or reordered: ``base`` is ``df`` with late rows marked
    ``late`` and the rows that became dirty marked ``DROPPED`` (the writer skips both in place);
    ``extras`` holds the dirty versions and the duplicates, made from a small gather.
    """
    r = rng_for(seed, "dirty", stream, part, day)
    kind, delay, dirty, dk, aux = _mark(r, df.height, stream, dirty_rate, late_rate, weights, batch_ms)
    dup_mask = (dk == K["exact_duplicate"]) | (dk == K["conflicting_duplicate"])
    in_place = dirty[~dup_mask]
    kind[in_place] = DROPPED
    base = df.with_columns(
        _kind=pl.Series(kind, dtype=pl.UInt8),
        _field=pl.lit(None, dtype=pl.String),
        _aux=pl.lit(0, dtype=pl.Int64),
        _delay=pl.Series(delay, dtype=pl.Int32),
    )
    out = []
    if len(in_place):
        out.append(_dirty_versions(base[in_place], stream, dk[~dup_mask], aux[~dup_mask], batch_ms))
    dup_rows = dirty[dup_mask]
    if len(dup_rows):
        out.append(_duplicates(r, base[dup_rows], stream, dk[dup_mask], aux[dup_mask]))
    return base, (pl.concat(out, how="vertical") if out else None)


def _mark(r: np.random.Generator, n: int, stream: str, dirty_rate: float, late_rate: float,
          weights: dict[str, float], batch_ms: int):
    """(kind per row with the late ones marked, delay in windows per row, dirty rows, their dirty
    kind, a random number per dirty row that picks its field and value).

    One uniform per row decides clean, dirty or late, so the shares are exact in expectation and
    a row is never both; dirty kinds follow ``weights``, less the field kinds the stream has no
    field for."""
    u = r.random(n)
    dirty = np.flatnonzero(u < dirty_rate)
    late = np.flatnonzero((u >= dirty_rate) & (u < dirty_rate + late_rate))
    kind = np.zeros(n, dtype=np.uint8)
    delay = np.zeros(n, dtype=np.int32)
    max_late_w = max(1, -(-MAX_LATE_MS // batch_ms))
    delay[late] = np.minimum(r.geometric(0.3, len(late)), max_late_w)
    kind[late] = K["late"]
    w = kind_weights(stream, weights)
    if len(dirty) and w.sum() > 0:
        pick = np.searchsorted(np.cumsum(w), r.random(len(dirty)) * w.sum(), side="right")
        dk = np.array([K[k] for k in DIRTY_KINDS], dtype=np.uint8)[np.minimum(pick, len(w) - 1)]
    else:
        dirty, dk = dirty[:0], np.zeros(0, np.uint8)
    aux = r.integers(0, 2**31 - 1, len(dirty), dtype=np.int64)
    return kind, delay, dirty, dk, aux


def _dirty_versions(sub: pl.DataFrame, stream: str, ik: np.ndarray, ia: np.ndarray, batch_ms: int) -> pl.DataFrame:
    """The modified copies that replace the in-place dirty rows ``sub``: for a field-level kind a
    field picked by ``ia`` (recorded in ``_field``), then a bogus enum value, a negative number or
    an oversized string in it, or a timestamp far in the future or past. Line-level kinds
    (malformed JSON, not an object, a missing or mistyped field) are only marked here; the writer
    rewrites their lines (``corrupt_line``)."""
    fields = np.full(len(sub), None, dtype=object)
    for kname in FIELD_KINDS:
        sel = np.flatnonzero(ik == K[kname])
        if len(sel):
            choices = field_choices(stream, kname)
            fields[sel] = np.array(choices, dtype=object)[ia[sel] % len(choices)]
    for kname in ("unknown_enum", "out_of_range", "oversized_string"):
        for f in field_choices(stream, kname):
            rows = np.flatnonzero((ik == K[kname]) & (fields == f))
            if not len(rows):
                continue
            if kname == "unknown_enum":
                allowed = set(schemas.STREAMS[stream].field(f).enum)
                bogus = [v for v in text.BOGUS_ENUM_VALUES if v not in allowed]
                sub = _scatter(sub, f, rows, [bogus[a % len(bogus)] for a in ia[rows]])
            elif kname == "out_of_range":
                orig = sub.get_column(f).to_numpy()[rows]
                sub = _scatter(sub, f, rows, -np.abs(orig).astype(np.int64) - 1 - ia[rows] % 1000)
            else:
                limit = schemas.STREAMS[stream].field(f).max_chars
                orig = sub.get_column(f).gather(rows).fill_null("").to_list()
                sub = _scatter(sub, f, rows, [(o + " " + _FILLER)[: limit + 1 + a % 300]
                                              if len(o) + 1 + len(_FILLER) > limit else o + "x" * (limit + 1)
                                              for o, a in zip(orig, ia[rows])])
    wts = sub.get_column("_wts").to_numpy()
    rows = np.flatnonzero(ik == K["future_timestamp"])
    if len(rows):  # hours to days after the flush (a client with a broken clock)
        sub = _scatter(sub, "ts_ms", rows, wts[rows] + batch_ms + HOUR_MS + ia[rows] % (3 * DAY_MS))
    rows = np.flatnonzero(ik == K["stale_timestamp"])
    if len(rows):  # years old (a device whose clock reset)
        sub = _scatter(sub, "ts_ms", rows, wts[rows] - 2 * 365 * DAY_MS - ia[rows] % (4 * 365 * DAY_MS))
    return sub.with_columns(
        _kind=pl.Series(ik, dtype=pl.UInt8),
        _field=pl.Series(fields.tolist(), dtype=pl.String),
        _aux=pl.Series(ia),
        _delay=pl.lit(0, dtype=pl.Int32),
    )


def _duplicates(r: np.random.Generator, copies: pl.DataFrame, stream: str, dk: np.ndarray,
                aux: np.ndarray) -> pl.DataFrame:
    """Extra copies of clean records, re-sent in the same file or a later one; a conflicting
    duplicate also changes the stream's conflict field, so it is not the same record."""
    ddelay = np.where(r.random(len(copies)) < 0.5, 0, r.integers(1, MAX_DUP_DELAY_WINDOWS + 1, len(copies)))
    cf = CONFLICT_FIELDS[stream]
    copies = copies.with_columns(
        _kind=pl.Series(dk, dtype=pl.UInt8),
        _aux=pl.Series(aux),
        _delay=pl.Series(ddelay.astype(np.int32), dtype=pl.Int32),
    )
    return copies.with_columns(
        pl.when(pl.col("_kind") == K["conflicting_duplicate"]).then(pl.col(cf) + 1 + pl.col("_aux") % 7)
        .otherwise(pl.col(cf)).alias(cf))


# ------------------------------------------------------------------------- line rewriting


def _dumps(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def corrupt_line(line: bytes, kind: int, field: str | None, aux: int) -> bytes:
    """Rewrite one serialised record (no trailing newline) into the given line-level dirty kind."""
    if kind == K["malformed_json"]:
        variant = aux % 3
        if variant == 0:  # truncated mid-record (the collector died while writing)
            lo = max(1, len(line) // 4)
            return line[: lo + aux % max(1, len(line) - 1 - lo)]
        if variant == 1:  # binary garbage; 0xff never occurs in UTF-8
            junk = bytearray(random.Random(aux).randbytes(48))
            junk = junk.replace(b"\n", b" ").replace(b"\r", b" ")
            return b"\xff" + bytes(junk)
        return b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    if kind == K["not_an_object"]:
        return b"[" + line + b"]" if aux % 2 == 0 else _dumps(line.decode("utf-8"))
    obj = json.loads(line)
    if kind == K["missing_field"]:
        del obj[field]
    elif kind == K["wrong_type"]:
        v = obj[field]
        if isinstance(v, bool):
            obj[field] = str(v).lower()
        elif isinstance(v, int):
            obj[field] = str(v) if aux % 2 == 0 else v + 0.5
        elif isinstance(v, float):
            obj[field] = str(v)
        elif isinstance(v, str):
            obj[field] = len(v) + aux % 1000 if aux % 2 == 0 else [v]
        elif isinstance(v, dict):
            obj[field] = json.dumps(v, ensure_ascii=False)
        else:
            raise ValueError(f"cannot mistype {field}={v!r}")
    else:
        raise ValueError(f"not a line-level kind: {kind}")
    return _dumps(obj)
