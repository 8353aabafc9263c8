"""Online counters: what the serving stack knows about users, videos and creators right now.

The streaming joiner (``training/stream_join.py``) keeps the last day of plays and interactions
in its state; after each committed step it writes these counters from them, as of the newest
event time it has seen, as the Delta table ``online_counters`` beside the lake's other tables
(local folder or ``s3://`` bucket), replaced whole in one transaction. The model server reads them
to compute, at request time, the features the ranker uses, and logs what it computed with each
impression, so the joiner trains on what was served. ``CountersSource`` polls the table on either
store (a new Delta version: new counters); on local disk ``counters_path`` (the table's folder)
also works with a poll on its mtime, which each write bumps after its commit.

The definitions are the simulator's (``simulator/observed.py``: the serving stack the simulated
platform runs), so a model trained on simulated impressions sees the same features when served:

- user: ``views_24h`` (plays in the last 24 h), ``engagements_24h`` (likes, shares, comments,
  follows in the last 24 h);
- video: ``views_24h``; ``plays_today`` and ``engaged_today`` (plays since UTC midnight, and those
  watched to ``ENGAGED_WATCH_RATIO`` of the duration): ``video_ctr`` smoothed as the simulator
  serves it; ``plays_last_hour``: ``trending_tag`` at ``TRENDING_PLAYS``;
- creator: ``follows_today``, added to the catalog's follower count.

Long format (``entity, id, counter, value``, plus ``as_of_ms``: the event time the counters hold
for, the same on every row) so that analysts, or any Delta reader, can read it as a table.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError

from tiktok_pipelines.simulator.observed import (
    ENGAGED_WATCH_RATIO,
    PRIOR_CTR,
    PRIOR_PLAYS,
    TRENDING_PLAYS,
    TRENDING_WINDOW_MS,
)
from tiktok_pipelines.sqlfiles import load_sql
from tiktok_pipelines.tables import TableStore

COUNTERS_TABLE = "online_counters"
COUNTERS_APP = "online-counters"  # its app transaction version: the joiner's step the counters are of
DAY_MS = 86_400_000
SCHEMA = pa.schema([("entity", pa.string()), ("id", pa.int64()), ("counter", pa.string()), ("value", pa.int64())])
TABLE_SCHEMA = SCHEMA.append(pa.field("as_of_ms", pa.int64()))


def _store(lake: str | os.PathLike | TableStore, storage_options: dict[str, str] | None = None) -> TableStore:
    if isinstance(lake, TableStore):
        return lake
    if hasattr(lake, "store") and isinstance(lake.store, TableStore):  # an ingest.engine.Lake
        return lake.store
    if storage_options is not None:
        root = str(lake)
        return TableStore(root.rstrip("/") if root.startswith("s3://") else str(Path(root).absolute()),
                          dict(storage_options))
    return TableStore.from_config(str(lake))


def counters_path(lake_root: str | os.PathLike) -> Path | str:
    """The counters table's location: its folder in a local lake (what ``OnlineCounters.read``
    takes, and whose mtime changes after each new version: ``write_counters``), or its
    ``s3://`` URI."""
    if str(lake_root).startswith("s3://"):
        return f"{str(lake_root).rstrip('/')}/{COUNTERS_TABLE}"
    return Path(lake_root) / COUNTERS_TABLE


def compute_counters(views: pa.Table, interactions: pa.Table, as_of_ms: int) -> pa.Table:
    """The counters of plays and interactions with ``ts_ms <= as_of_ms``, in long format."""
    day0 = as_of_ms - as_of_ms % DAY_MS
    con = duckdb.connect()
    try:
        con.execute("SET threads = 1")
        con.register("v", views)
        con.register("x", interactions)
        sql = load_sql(__package__, "online_counters", as_of_ms=as_of_ms, day_ago_ms=as_of_ms - DAY_MS,
                       day0_ms=day0, engaged_watch_ratio=repr(ENGAGED_WATCH_RATIO),
                       trending_start_ms=as_of_ms - TRENDING_WINDOW_MS)
        return con.sql(sql).to_arrow_table().cast(SCHEMA)
    finally:
        con.close()


def write_counters(lake_root: str | os.PathLike | TableStore, counters: pa.Table, as_of_ms: int, *,
                   seq: int | None = None, retries: int = 20) -> int | None:
    """Replace the counters table's rows with ``counters`` (one transaction). With ``seq`` (the
    streaming joiner's committed step) the write lands only if no counters of that step or a
    later one are there: two joiner runs finishing out of order on object storage (no lock there)
    never put older counters over newer ones. Returns the new version (None: not written)."""
    store = _store(lake_root)
    data = counters.select(SCHEMA.names).cast(SCHEMA).append_column(
        "as_of_ms", pa.array([as_of_ms] * counters.num_rows, pa.int64()))
    if seq is None:
        version = store.replace(COUNTERS_TABLE, data)
    else:
        version = None
        t = store.ensure(COUNTERS_TABLE, TABLE_SCHEMA)
        for attempt in range(retries):
            if attempt:
                t = store.table(COUNTERS_TABLE)
            if (t.transaction_version(COUNTERS_APP) or 0) >= seq:
                return None
            try:
                # Delta refuses this commit when a concurrent one carries the same app id: the
                # check above is then made again on the newer snapshot.
                write_deltalake(t, data, mode="overwrite", storage_options=store.storage_options or None,
                                commit_properties=CommitProperties(app_transactions=[Transaction(COUNTERS_APP, seq)]))
            except CommitFailedError:
                if attempt == retries - 1:
                    raise
                time.sleep(min(0.5, 0.01 * 2 ** attempt))
                continue
            version = store.table(COUNTERS_TABLE).version()
            break
    if store.is_local:
        # The commit's file lands in _delta_log/, which leaves the table folder's mtime as the new
        # data file set it, before the commit: bumped now, a poller of the folder's mtime (the
        # model server's counters_path) sees a change after the commit, never only before it.
        os.utime(store.uri(COUNTERS_TABLE))
    return version


@dataclass
class OnlineCounters:
    """The counters as the server holds them: one dict per (entity, counter). Missing = 0."""

    as_of_ms: int | None = None
    values: dict[tuple[str, str], dict[int, int]] = field(default_factory=dict)

    version: int | None = None  # the table version read (None: no table)

    @classmethod
    def read(cls, path: str | os.PathLike, storage_options: dict[str, str] | None = None) -> OnlineCounters:
        """The counters table at ``path`` (``counters_path(lake)``, or ``s3://.../online_counters``
        with the store's options; default: from the AWS environment), at its newest version.
        No table yet: empty counters."""
        root, _, name = str(path).rstrip("/").rpartition("/")
        store = _store(root or ".", storage_options)
        t = store.table(name)
        return cls() if t is None else cls.from_snapshot(store, name, t)

    @classmethod
    def from_snapshot(cls, store: TableStore, name: str, t: DeltaTable) -> OnlineCounters:
        table = store.arrow_dataset(t, name).to_table()
        values: dict[tuple[str, str], dict[int, int]] = {}
        for entity, id_, counter, value in zip(*(table.column(c).to_pylist() for c in SCHEMA.names)):
            values.setdefault((entity, counter), {})[id_] = value
        as_of = table.column("as_of_ms")[0].as_py() if table.num_rows else None
        return cls(as_of, values, t.version())

    def get(self, entity: str, counter: str, id_: int) -> int:
        return self.values.get((entity, counter), {}).get(int(id_), 0)

    def video_ctr(self, video_id: int) -> float:
        """The simulator's served definition: engaged share of today's plays, smoothed."""
        plays, engaged = self.get("video", "plays_today", video_id), self.get("video", "engaged_today", video_id)
        return (engaged + PRIOR_CTR * PRIOR_PLAYS) / (plays + PRIOR_PLAYS)

    def trending(self, video_id: int) -> bool:
        return self.get("video", "plays_last_hour", video_id) >= TRENDING_PLAYS


class CountersSource:
    """The counters for a server, on either store: ``poll()`` returns new counters when the
    table has a new version since the last poll, else None. A poll reads only the Delta log's
    newest entries; the rows are read when they changed."""

    def __init__(self, lake_location: str | os.PathLike | TableStore, storage_options: dict[str, str] | None = None):
        self.store = _store(lake_location, storage_options)
        self._table: DeltaTable | None = None
        self.version: int | None = None

    def poll(self) -> OnlineCounters | None:
        if self._table is None:
            self._table = self.store.table(COUNTERS_TABLE)
            if self._table is None:
                return None
        else:
            self._table.update_incremental()
        if self._table.version() == self.version:
            return None
        counters = OnlineCounters.from_snapshot(self.store, COUNTERS_TABLE, self._table)
        self.version = counters.version
        return counters
