"""Daily, point-in-time features for users, videos and creators (no Dagster import).

The rule: the row of an entity for feature date ``D`` describes it *as of D 00:00 UTC*. Only
events with ``ts_ms < start of D`` enter it, so it is exactly what a model serving on day D may
use (and what a training example from day D may be joined with, with no leakage from the day it
predicts). A window of ``w`` days means ``start(D) - w days <= ts_ms < start(D)``.

Everything is computed by DuckDB straight from the lake's committed snapshot of each events table
(Delta: the files its newest version names, never a listing of ``events/<stream>/``, so a file a
writer dropped there but never committed is not read): partitions (``event_date``) outside the
window are pruned from the Delta log, the rest are read with only the columns needed, and
``ts_ms`` is filtered as well, so an event that sits in an earlier partition but happened on or
after D (or a late batch committed anywhere) changes nothing.

Output: the Delta table ``features/<entity>`` under the lake root (local disk or
``s3://bucket/prefix``, as the events), partitioned by ``feature_date`` (a DATE column). Building a
date replaces that date's rows in one Delta transaction (``TableStore.replace``): a reader sees the
previous build or the new one, never both or neither, and re-running a date is idempotent. Readers
(the warehouse's ``features.*`` views, ``read_features``, any engine that reads Delta) read a
committed snapshot, never a glob. Definitions of every column: ``docs/features.md``.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from tiktok_pipelines.dims import dim_table
from tiktok_pipelines.ingest.engine import Lake, events_table, lake_dates, table_source
from tiktok_pipelines.lake import sql_path
from tiktok_pipelines.layout import FEATURES_DIR
from tiktok_pipelines.sqlfiles import load_sql
from tiktok_pipelines.warehouse import lake_relation

DATE_COLUMN = "feature_date"  # the tables' partition column (DATE)
ENTITIES = ("user", "video", "creator")
# Warehouse views (schema ``features``) over every partition of each entity.
VIEWS = {"user": "features.user_daily", "video": "features.video_daily", "creator": "features.creator_daily"}
KEYS = {"user": "user_id", "video": "video_id", "creator": "creator_id"}
# The lake streams each entity reads (its Dagster asset depends on exactly these).
STREAMS_READ = {
    "user": ("impressions", "views", "interactions"),
    "video": ("impressions", "views", "interactions"),
    "creator": ("views", "interactions"),
}

DAY_MS = 86_400_000
USER_WINDOWS = (1, 7, 28)
VIDEO_WINDOWS = (1, 7)
CREATOR_WINDOWS = (1, 7)
# Trending: plays weighted by 2^(-age / half-life), turned into a plays-per-day rate, against the
# plain daily rate of the six days before the last one (see video_sql).
TRENDING_HALF_LIFE_H = 6.0
TRENDING_BASELINE_DAYS = 6
UNKNOWN_CATEGORY = "unknown"  # videos the catalog does not know, or with no category

_VIEW_COLS = {"ts_ms": "BIGINT", "user_id": "BIGINT", "video_id": "BIGINT", "creator_id": "BIGINT",
              "watch_time_ms": "BIGINT", "video_duration_ms": "BIGINT"}
_IMP_COLS = {"ts_ms": "BIGINT", "user_id": "BIGINT", "video_id": "BIGINT"}
_INTER_COLS = {"ts_ms": "BIGINT", "user_id": "BIGINT", "video_id": "BIGINT", "creator_id": "BIGINT",
               "event_type": "VARCHAR"}
_VIDEO_COLS = {"video_id": "BIGINT", "creator_id": "BIGINT", "category": "VARCHAR", "published_at_ms": "BIGINT"}


# ------------------------------------------------------------------------------------- dates/paths


def as_of_ms(day: str | dt.date) -> int:
    """Epoch ms of ``day`` 00:00 UTC: the cutoff of that feature date (exclusive)."""
    d = dt.date.fromisoformat(day) if isinstance(day, str) else day
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc).timestamp() * 1000)


LakeLike = str | os.PathLike | Lake  # a lake root (local folder or s3://bucket/prefix), or a Lake


def _lake(lake_root: LakeLike) -> Lake:
    return lake_root if isinstance(lake_root, Lake) else Lake(str(lake_root))


def feature_table(entity: str) -> str:
    """The lake table of an entity's features: ``features/<entity>``."""
    _check_entity(entity)
    return f"{FEATURES_DIR}/{entity}"


def feature_dates_written(lake_root: LakeLike, entity: str, version: int | None = None) -> list[str]:
    """The feature dates holding rows in the table's committed ``version`` (default: the newest),
    from its Delta log (a date built with no row has no file, so it is not listed)."""
    acts = _lake(lake_root).store.add_actions(feature_table(entity), version)
    if acts is None or acts.num_rows == 0:
        return []
    return sorted({str(d) for d in acts.column(f"partition.{DATE_COLUMN}").to_pylist()})


def read_features(lake_root: LakeLike, entity: str, *, days: list[str] | None = None,
                  version: int | None = None) -> pa.Table | None:
    """The committed feature rows of ``entity`` (only ``days`` if given) at ``version`` (default:
    the newest), ``feature_date`` a DATE, ordered by date and key; None before the first build."""
    lake = _lake(lake_root)
    con = duckdb.connect()
    try:
        src = table_source(con, lake, feature_table(entity), days=days, version=version, date_column=DATE_COLUMN)
        if src is None:
            return None
        return con.sql(f"SELECT * REPLACE (CAST({DATE_COLUMN} AS DATE) AS {DATE_COLUMN}) FROM {src} "
                       f"ORDER BY {DATE_COLUMN}, {KEYS[entity]}").to_arrow_table()
    finally:
        con.close()


def _check_entity(entity: str) -> None:
    if entity not in ENTITIES:
        raise ValueError(f"unknown entity {entity!r}; expected one of {ENTITIES}")


def _partition_dates(lake: Lake, stream: str) -> list[dt.date]:
    """The dates the stream's committed version holds rows for (its Delta log's partitions)."""
    return [dt.date.fromisoformat(d) for d in lake_dates(lake.store.root, stream, lake.store)]


def event_dates(lake_root: LakeLike, streams: tuple[str, ...] = ("impressions", "views", "interactions")) -> list[str]:
    """Dates with committed rows in any of ``streams``."""
    lake = _lake(lake_root)
    days = {d for s in streams for d in _partition_dates(lake, s)}
    return sorted(d.isoformat() for d in days)


def backfill_dates(lake_root: LakeLike) -> list[str]:
    """Every date from the first event date through the day after the last one: the feature dates
    whose rows the lake can inform (the last is what serving uses the day after the data ends)."""
    days = event_dates(lake_root)
    if not days:
        return []
    first, last = dt.date.fromisoformat(days[0]), dt.date.fromisoformat(days[-1]) + dt.timedelta(days=1)
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def _window_dates(dates, day: dt.date, lookback_days: int | None) -> list[dt.date]:
    """The partitions (of ``dates``) that can hold events of the window (pruning): event dates in
    [day - lookback, day), or every date before ``day`` when ``lookback_days`` is None."""
    first = None if lookback_days is None else day - dt.timedelta(days=lookback_days)
    return sorted(x for x in dates if x < day and (first is None or x >= first))


@dataclass(frozen=True)
class _Pinned:
    """A stream's events table at its newest committed version: the files it names, by date."""

    version: int
    files: dict[dt.date, list[str]]  # full local paths (or s3:// URIs), sorted by name


def _pin(lake: Lake, stream: str) -> _Pinned | None:
    name = events_table(stream)
    t = lake.store.table(name)
    if t is None:
        return None
    acts = pa.table(t.get_add_actions(flatten=True))
    files: dict[dt.date, list[str]] = {}
    if acts.num_rows:
        base = lake.store.uri(name)
        for path, day in zip(acts.column("path").to_pylist(), acts.column("partition.event_date").to_pylist()):
            day = day if isinstance(day, dt.date) else dt.date.fromisoformat(str(day))
            files.setdefault(day, []).append(f"{base}/{urllib.parse.unquote(path)}")
    return _Pinned(t.version(), {d: sorted(fs) for d, fs in files.items()})


def _source(con: duckdb.DuckDBPyConnection, lake: Lake, stream: str, pinned: _Pinned,
            days: list[dt.date]) -> str | None:
    """A FROM-clause item over the pinned version's files dated in ``days``; None when none.

    Locally the files are listed in (date, name) order, as the earlier listing read them: DuckDB
    sums floats in scan order, and a fixed order keeps a feature's last bits the same from run to
    run. On object storage, the snapshot's Arrow dataset (``table_source``)."""
    if not lake.store.is_local:
        return table_source(con, lake, events_table(stream), days=[x.isoformat() for x in days],
                            version=pinned.version)
    files = [f for x in days for f in pinned.files.get(x, [])]
    if not files:
        return None
    listed = ", ".join(sql_path(f) for f in files)  # a view cannot take a parameter
    return f"read_parquet([{listed}], hive_partitioning = true, union_by_name = true)"


# ------------------------------------------------------------------------------------------ inputs


def _relation(con: duckdb.DuckDBPyConnection, name: str, source: str | None, columns: dict[str, str],
              where: str) -> None:
    """Temp view ``name`` over a FROM-clause item (``table_source``), typed and empty when None."""
    cols = ", ".join(f"{c}::{t} AS {c}" for c, t in columns.items())
    if source is not None:
        body = f"SELECT {cols} FROM {source} WHERE {where}"
    else:
        body = "SELECT " + ", ".join(f"NULL::{t} AS {c}" for c, t in columns.items()) + " WHERE false"
    con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {body}")


def _videos_relation(con: duckdb.DuckDBPyConnection, lake: Lake | None, videos_path: Path | None) -> None:
    """``catalog_videos``: from the Parquet file ``videos_path`` if given, else from the lake's
    ``dims/videos`` table (its newest committed version); typed and empty when neither exists."""
    source = None
    if videos_path is not None:
        source = f"read_parquet({sql_path(videos_path)})" if Path(videos_path).exists() else None
    elif lake is not None:
        source = table_source(con, lake, dim_table("videos"))
    if source is not None:
        body = (f"SELECT video_id::BIGINT AS video_id, creator_id::BIGINT AS creator_id, "
                f"coalesce(category, '{UNKNOWN_CATEGORY}')::VARCHAR AS category, "
                f"published_at_ms::BIGINT AS published_at_ms FROM {source}")
    else:
        body = "SELECT " + ", ".join(f"NULL::{t} AS {c}" for c, t in _VIDEO_COLS.items()) + " WHERE false"
    con.execute(f"CREATE OR REPLACE TEMP VIEW catalog_videos AS {body}")


def prepare_inputs(con: duckdb.DuckDBPyConnection, lake_root: LakeLike, entity: str, day: str,
                   videos_path: Path | None = None, *, empty: bool = False) -> None:
    """Temp views ``views``, ``imps``, ``inter`` (the entity's window, ts < cutoff),
    ``follows`` (every follow before the cutoff, creators only) and ``catalog_videos`` (the
    Parquet file ``videos_path``; without one, the lake's ``dims/videos`` table)."""
    _check_entity(entity)
    lake = _lake(lake_root)
    d = dt.date.fromisoformat(day)
    cutoff = as_of_ms(d)
    longest = max({"user": USER_WINDOWS, "video": VIDEO_WINDOWS, "creator": CREATOR_WINDOWS}[entity])
    window = f"ts_ms >= {cutoff - longest * DAY_MS} AND ts_ms < {cutoff}"

    # One committed version per stream for every view of it (``inter`` and ``follows`` agree).
    pinned = {} if empty else {s: _pin(lake, s) for s in STREAMS_READ[entity]}

    def source(stream: str, lookback: int | None) -> str | None:
        if pinned.get(stream) is None:
            return None
        days = _window_dates(pinned[stream].files, d, lookback)
        return _source(con, lake, stream, pinned[stream], days) if days else None

    _relation(con, "views", source("views", longest), _VIEW_COLS, window)
    _relation(con, "imps", source("impressions", longest), _IMP_COLS, window)
    _relation(con, "inter", source("interactions", longest), _INTER_COLS, window)
    # Followers are cumulative: every interactions partition before D (only 4 columns are read).
    follows = source("interactions", None) if entity == "creator" else None
    _relation(con, "follows", follows, _INTER_COLS, f"event_type = 'follow' AND ts_ms < {cutoff}")
    _videos_relation(con, None if empty else lake, None if empty else videos_path)


# -------------------------------------------------------------------------------------------- SQL
# Each entity's query is ``features/sql/<entity>_features.sql``; its function below renders it,
# building the columns that repeat per window (USER_WINDOWS, ...) here in Python.


def _w(cutoff: int, days: int) -> str:
    """Condition: the event is within the last ``days`` days before the cutoff."""
    return f"ts_ms >= {cutoff - days * DAY_MS}"


def user_sql(day: str) -> str:
    cutoff = as_of_ms(day)
    long = max(USER_WINDOWS)
    per_view = []
    per_imp = []
    per_act = []
    rates = []
    for w in USER_WINDOWS:
        f = f"FILTER (WHERE {_w(cutoff, w)})"
        per_view += [f"count(*) {f} AS plays_{w}d",
                     f"coalesce(sum(watch_time_ms) {f}, 0)::BIGINT AS watch_time_ms_{w}d",
                     f"avg(watch_ratio) {f} AS watch_ratio_mean_{w}d"]
        per_imp += [f"count(*) {f} AS impressions_{w}d"]
        per_act += [f"count(*) FILTER (WHERE event_type = '{t}' AND {_w(cutoff, w)}) AS {t}s_{w}d"
                    for t in ("like", "share", "comment")]
        rates += [f"coalesce(va.plays_{w}d, 0) AS plays_{w}d", f"coalesce(ia.impressions_{w}d, 0) AS impressions_{w}d",
                  f"coalesce(va.watch_time_ms_{w}d, 0) AS watch_time_ms_{w}d", f"va.watch_ratio_mean_{w}d",
                  f"coalesce(va.plays_{w}d, 0) / nullif(coalesce(ia.impressions_{w}d, 0), 0)::DOUBLE AS play_rate_{w}d"]
        for t in ("like", "share", "comment"):
            rates += [f"coalesce(aa.{t}s_{w}d, 0) AS {t}s_{w}d",
                      f"coalesce(aa.{t}s_{w}d, 0) / nullif(coalesce(va.plays_{w}d, 0), 0)::DOUBLE AS {t}_rate_{w}d"]
    hours = ", ".join(f"count(*) FILTER (WHERE hour_utc = {h}) / count(*)::DOUBLE" for h in range(24))
    return load_sql(__package__, "user_features", cutoff=cutoff, long=long, day_ms=DAY_MS,
                    unknown_category=UNKNOWN_CATEGORY, per_view=", ".join(per_view), per_imp=", ".join(per_imp),
                    per_act=", ".join(per_act), hours=hours, rates=", ".join(rates))


def video_sql(day: str) -> str:
    cutoff = as_of_ms(day)
    hl_ms = int(TRENDING_HALF_LIFE_H * 3_600_000)
    per_view, per_imp, per_act, cols = [], [], [], []
    for w in VIDEO_WINDOWS:
        f = f"FILTER (WHERE {_w(cutoff, w)})"
        per_view += [f"count(*) {f} AS plays_{w}d",
                     f"count(*) FILTER (WHERE watch_time_ms >= video_duration_ms AND {_w(cutoff, w)}) AS finishes_{w}d",
                     f"coalesce(sum(watch_time_ms) {f}, 0)::BIGINT AS watch_time_ms_{w}d",
                     f"avg(watch_time_ms / video_duration_ms::DOUBLE) {f} AS watch_ratio_mean_{w}d",
                     f"count(DISTINCT user_id) {f} AS unique_viewers_{w}d"]
        per_imp += [f"count(*) {f} AS impressions_{w}d"]
        per_act += [f"count(*) FILTER (WHERE event_type = '{t}' AND {_w(cutoff, w)}) AS {t}s_{w}d"
                    for t in ("like", "share", "comment")]
        plays, imps = f"coalesce(va.plays_{w}d, 0)", f"coalesce(ia.impressions_{w}d, 0)"
        eng = " + ".join(f"coalesce(aa.{t}s_{w}d, 0)" for t in ("like", "share", "comment"))
        cols += [f"{imps} AS impressions_{w}d", f"{plays} AS plays_{w}d",
                 f"coalesce(va.finishes_{w}d, 0) AS finishes_{w}d",
                 f"coalesce(va.watch_time_ms_{w}d, 0) AS watch_time_ms_{w}d",
                 f"coalesce(va.unique_viewers_{w}d, 0) AS unique_viewers_{w}d",
                 f"va.watch_ratio_mean_{w}d",
                 f"{plays} / nullif({imps}, 0)::DOUBLE AS ctr_{w}d",
                 f"coalesce(va.finishes_{w}d, 0) / nullif({plays}, 0)::DOUBLE AS completion_rate_{w}d"]
        for t in ("like", "share", "comment"):
            cols += [f"coalesce(aa.{t}s_{w}d, 0) AS {t}s_{w}d",
                     f"coalesce(aa.{t}s_{w}d, 0) / nullif({plays}, 0)::DOUBLE AS {t}_rate_{w}d"]
        cols += [f"({eng}) / nullif({plays}, 0)::DOUBLE AS engagement_rate_{w}d"]
    # velocity: sum of 2^(-age/h) is, for a steady rate r per ms, r * h / ln 2 in expectation;
    # so sum * ln2 / h * DAY_MS estimates plays per day, weighted towards the last hours.
    velocity = f"coalesce(va.decayed_plays, 0) * {math.log(2)!r} / {hl_ms} * {DAY_MS}"
    baseline = f"coalesce(va.baseline_plays, 0) / {TRENDING_BASELINE_DAYS}.0"
    return load_sql(__package__, "video_features", cutoff=cutoff, half_life_ms=hl_ms, day_ms=DAY_MS,
                    last_day_start=cutoff - DAY_MS, baseline_start=cutoff - (1 + TRENDING_BASELINE_DAYS) * DAY_MS,
                    unknown_category=UNKNOWN_CATEGORY, per_view=", ".join(per_view), per_imp=", ".join(per_imp),
                    per_act=", ".join(per_act), cols=", ".join(cols), velocity=velocity, baseline=baseline)


def creator_sql(day: str) -> str:
    cutoff = as_of_ms(day)
    per_view, per_act, cols = [], [], []
    for w in CREATOR_WINDOWS:
        f = f"FILTER (WHERE {_w(cutoff, w)})"
        per_view += [f"count(*) {f} AS views_{w}d",
                     f"coalesce(sum(watch_time_ms) {f}, 0)::BIGINT AS watch_time_ms_{w}d",
                     f"count(*) FILTER (WHERE watch_time_ms >= video_duration_ms AND {_w(cutoff, w)}) AS full_watches_{w}d",
                     f"count(DISTINCT user_id) {f} AS reach_{w}d",
                     f"count(DISTINCT video_id) {f} AS videos_viewed_{w}d"]
        per_act += [f"count(*) FILTER (WHERE event_type = '{t}' AND {_w(cutoff, w)}) AS {t}s_{w}d"
                    for t in ("like", "share", "comment")]
        views = f"coalesce(va.views_{w}d, 0)"
        eng = " + ".join(f"coalesce(aa.{t}s_{w}d, 0)" for t in ("like", "share", "comment"))
        cols += [f"{views} AS views_{w}d", f"coalesce(va.watch_time_ms_{w}d, 0) AS watch_time_ms_{w}d",
                 f"coalesce(va.watch_time_ms_{w}d, 0) / nullif({views}, 0)::DOUBLE AS avg_watch_time_ms_{w}d",
                 f"coalesce(va.full_watches_{w}d, 0) / nullif({views}, 0)::DOUBLE AS full_watch_rate_{w}d",
                 f"coalesce(va.reach_{w}d, 0) AS reach_{w}d", f"coalesce(va.videos_viewed_{w}d, 0) AS videos_viewed_{w}d"]
        cols += [f"coalesce(aa.{t}s_{w}d, 0) AS {t}s_{w}d" for t in ("like", "share", "comment")]
        cols += [f"({eng}) / nullif({views}, 0)::DOUBLE AS engagement_rate_{w}d"]
    growth = []
    for w in CREATOR_WINDOWS:
        growth += [f"count(*) FILTER (WHERE first_ms >= {cutoff - w * DAY_MS}) AS follower_growth_{w}d"]
    longest = max(CREATOR_WINDOWS)
    growth_cols = ", ".join(f"coalesce(fa.follower_growth_{w}d, 0) AS follower_growth_{w}d" for w in CREATOR_WINDOWS)
    return load_sql(__package__, "creator_features", cutoff=cutoff, longest=longest, growth=", ".join(growth),
                    per_view=", ".join(per_view), per_act=", ".join(per_act), growth_cols=growth_cols,
                    cols=", ".join(cols))


SQL = {"user": user_sql, "video": video_sql, "creator": creator_sql}


# ------------------------------------------------------------------------------------ compute/write


@dataclass
class FeatureReport:
    entity: str
    day: str
    table: str  # the Delta table's location: a local path or an s3:// URI
    version: int  # the table's version this build committed
    rows: int
    null_rates: dict[str, float] = field(default_factory=dict)
    stats: dict[str, float | None] = field(default_factory=dict)
    schema: list[tuple[str, str]] = field(default_factory=list)  # (column, DuckDB type), feature_date last


def compute_features(lake_root: LakeLike, entity: str, day: str, videos_path: Path | None = None):
    """The feature rows of ``entity`` for ``day`` as an Arrow table (nothing is written)."""
    con = duckdb.connect()
    try:
        prepare_inputs(con, lake_root, entity, day, videos_path)
        return con.sql(SQL[entity](day)).to_arrow_table()
    finally:
        con.close()


def empty_schema(entity: str) -> list[tuple[str, str]]:
    """(column, DuckDB type) of an entity's rows, from its SQL over empty inputs."""
    con = duckdb.connect()
    try:
        prepare_inputs(con, ".", entity, "2000-01-01", empty=True)
        rel = con.sql(SQL[entity]("2000-01-01"))
        return [(c, str(t)) for c, t in zip(rel.columns, rel.types)]
    finally:
        con.close()


# A few distribution numbers per entity for the run's metadata: (label, SQL expression).
SUMMARY = {
    "user": [("plays_28d_mean", "avg(plays_28d)"), ("plays_28d_p90", "quantile_cont(plays_28d, 0.9)"),
             ("watch_ratio_mean_28d_p50", "quantile_cont(watch_ratio_mean_28d, 0.5)"),
             ("like_rate_28d_mean", "avg(like_rate_28d)"),
             ("users_with_category_affinity", "count(category_affinity_28d)")],
    "video": [("ctr_7d_p50", "quantile_cont(ctr_7d, 0.5)"), ("ctr_7d_p90", "quantile_cont(ctr_7d, 0.9)"),
              ("completion_rate_7d_mean", "avg(completion_rate_7d)"),
              ("trending_score_p50", "quantile_cont(trending_score, 0.5)"),
              ("trending_score_max", "max(trending_score)")],
    "creator": [("followers_total", "sum(followers)"), ("followers_p90", "quantile_cont(followers, 0.9)"),
                ("follower_growth_7d_total", "sum(follower_growth_7d)"),
                ("engagement_rate_7d_mean", "avg(engagement_rate_7d)")],
}


def write_features(lake_root: LakeLike, entity: str, day: str,
                   videos_path: Path | None = None, *, threads: int | None = None) -> FeatureReport:
    """Compute ``entity`` features for ``day`` and replace that date's rows of ``features/<entity>``
    with them, in one Delta transaction (the first build creates the table)."""
    lake = _lake(lake_root)
    dt.date.fromisoformat(day)  # a date, nothing else, goes into the partition predicate
    con = duckdb.connect()
    try:
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        prepare_inputs(con, lake, entity, day, videos_path)
        rel = con.sql(SQL[entity](day))
        schema = [(c, str(t)) for c, t in zip(rel.columns, rel.types)] + [(DATE_COLUMN, "DATE")]
        table = rel.to_arrow_table()
        rows, null_rates, stats = _summarise(con, table, entity)
    finally:
        con.close()
    table = table.append_column(pa.field(DATE_COLUMN, pa.date32()),
                                pa.array([dt.date.fromisoformat(day)] * table.num_rows, pa.date32()))
    name = feature_table(entity)
    version = lake.store.replace(name, table, where=(DATE_COLUMN, day), partition_by=[DATE_COLUMN])
    return FeatureReport(entity=entity, day=day, table=lake.store.uri(name), version=version, rows=rows,
                         null_rates=null_rates, stats=stats, schema=schema)


def _summarise(con: duckdb.DuckDBPyConnection, table: pa.Table, entity: str):
    """(rows, null rate per column, SUMMARY stats) of a build's rows."""
    con.register("_built", table)
    try:
        cols = table.schema.names
        counts = ", ".join(f'count("{c}")' for c in cols)
        row = con.execute(f"SELECT count(*), {counts} FROM _built").fetchall()[0]
        rows = int(row[0])
        null_rates = {c: (1 - n / rows if rows else 0.0) for c, n in zip(cols, row[1:])}
        exprs = ", ".join(e for _, e in SUMMARY[entity])
        values = con.execute(f"SELECT {exprs} FROM _built").fetchall()[0]
    finally:
        con.unregister("_built")
    stats = {label: (None if v is None else float(v)) for (label, _), v in zip(SUMMARY[entity], values)}
    return rows, null_rates, stats


# ---------------------------------------------------------------------------------- warehouse views


def create_feature_views(con: duckdb.DuckDBPyConnection, lake_root: LakeLike,
                         entities: tuple[str, ...] = ENTITIES) -> dict[str, int]:
    """(Re)create ``features.<entity>_daily`` over the newest committed version of each entity's
    table, in one transaction; returns the number of dates each holds.

    As the warehouse's ``raw.*`` (``warehouse.lake_relation``): on local disk a view over the files
    that version names (never a glob), from object storage a table loaded with its rows.
    ``feature_date`` is a DATE. While an entity has no row the view exists, typed and empty, so
    SQL that references it always compiles."""
    lake = _lake(lake_root)
    written: dict[str, int] = {}
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("CREATE SCHEMA IF NOT EXISTS features")
        for entity in entities:
            name = feature_table(entity)
            version = lake.store.version(name)
            cols = [(c, t) for c, t in empty_schema(entity)] + [(DATE_COLUMN, "DATE")]
            empty = "SELECT " + ", ".join(f'NULL::{t} AS "{c}"' for c, t in cols) + " WHERE false"
            lake_relation(con, VIEWS[entity], lake, name, version=version, empty=empty, date_column=DATE_COLUMN,
                          select=f"* REPLACE (CAST({DATE_COLUMN} AS DATE) AS {DATE_COLUMN})")
            written[entity] = len(feature_dates_written(lake, entity, version)) if version is not None else 0
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return written
