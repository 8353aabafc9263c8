"""The joiner: serve-time feature log + the actions that follow -> labelled training examples.

One example per impression (the recommender put a video in a user's feed). Its features are
what the recommender *served* (the ``served_features`` logged with the impression) plus history
counts computed strictly before the impression; its labels come from the user's actions on that
video in the ``label_window_s`` after it.

Labels (all per impression, from actions with ``impression.ts_ms <= action.ts_ms <=
impression.ts_ms + label_window_s``). An action names the impression it follows as real clients
log it: the impression's ``request_id`` and the ``video_id``, so one action labels one impression
(the model server never repeats a video in a response; the simulator's feed can, in a small
catalog, and then both displays get the actions on that video in that request). Actions without a ``request_id`` (a play from a shared link,
a like on a profile page) label nothing; they still count in the history features.

- ``played``: a view of the impression's video in its request.
- ``watch_time_ms``: the longest such view (0 if none); ``watch_ratio`` = watch time / duration.
- ``finished``: ``watch_ratio >= 1`` (watched to the end at least once).
- ``liked``, ``shared``, ``commented``: that interaction on the video; ``followed``: a follow of
  the video's creator from the video.
- ``engaged`` (the training target): liked or shared or commented or followed, or
  ``watch_ratio >= engaged_watch_ratio``.

Negative downsampling (Monolith): every positive (``engaged``) example is kept; a negative is kept
with probability ``negative_rate`` (r), decided by a hash of its impression id and ``seed``, so a
rebuild keeps the same rows. ``sample_rate`` records r (1 for positives). A model trained on the
sample predicts p; the calibrated probability is p' = p / (p + (1 - p) / r).

Point in time: history features (``user_views_24h`` ...) are the values the server logged with the
impression when it logged them (the model server does: its online counters), else they count
events with ``impression.ts_ms - history_window_s <= ts_ms < impression.ts_ms``, by event time. Nothing
after the impression enters a feature; the tests append later events and check every feature of
every existing example is unchanged. (A late *delivery* of an earlier event can still change a
history count on rebuild; the served features are immune, being logged at serve time.)

Input: the committed snapshot of the events tables (Delta), never a listing of their folders: a
build pins one version of each of ``events/impressions``, ``events/views`` and
``events/interactions`` (``EventsSnapshot``) and reads the files those versions name, so a file a
dead writer left behind is never read and a batch committing meanwhile is either wholly in or
wholly out. Pinning the same versions (``build_examples(..., versions=...)``, Delta time travel)
reproduces the read.

Storage: the Delta table ``examples`` under the lake's root (beside the events, so on local
disk or in a bucket alike), partitioned by ``event_date`` (the impression's date). Rebuilding a
date replaces exactly that date's rows in one Delta transaction (an overwrite with the predicate
``event_date = 'D'``): a reader sees the old rows or the new ones, never a mix. Readers go through
the table's committed snapshot (``examples_source``, ``read_examples``), never a glob.

Each built date's fingerprint of its inputs (the committed files of the partitions it read, and
this config) and the version of each events table it read are kept in a second small Delta table,
``examples_meta`` (event_date, fingerprint, lake_versions_json, config_json), one row per date,
replaced the same way in a commit made *after* the examples' commit. Why a table rather than the
examples commit's custom metadata: commit metadata lives in the log's commitInfo, which
checkpoints drop and vacuum/log cleanup expires, and finding a date's latest build there means
walking the history; a table row is read from the snapshot like any data. A build that dies
between the two commits leaves the old (or no) fingerprint for that date, so the next build just
rebuilds it: the meta row is never ahead of the rows it describes. ``build_examples`` rebuilds a
date only when the fingerprint changed, e.g. when late events landed in a partition it reads;
``examples_lake_versions`` collects the versions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import urllib.parse
from dataclasses import asdict, dataclass, field

import duckdb
import pyarrow as pa

from tiktok_pipelines.ingest.engine import Lake, events_table, table_source
from tiktok_pipelines.lake import sql_path
from tiktok_pipelines.sqlfiles import load_sql

EXAMPLES_TABLE = "examples"  # Delta table, partitioned by event_date
EXAMPLES_META_TABLE = "examples_meta"  # one row per built date: fingerprint, lake versions, config
EXAMPLES_META_SCHEMA = pa.schema([("event_date", pa.string()), ("fingerprint", pa.string()),
                                  # {"events/impressions": version, ...}: the Delta version of each
                                  # events table the date's examples were built from
                                  ("lake_versions_json", pa.string()), ("config_json", pa.string())])
JOIN_STREAMS = ("impressions", "views", "interactions")

# Keys of the impressions' served_features object, with their SQL types: the served feature log.
SERVED_FEATURES = {
    "age_band": "VARCHAR",
    "country": "VARCHAR",
    "language": "VARCHAR",
    "category": "VARCHAR",
    "video_duration_ms": "BIGINT",
    "video_age_h": "DOUBLE",
    "creator_followers": "BIGINT",
    "video_ctr": "DOUBLE",
    "trending_tag": "BOOLEAN",
    "follows_creator": "BOOLEAN",
}
HISTORY_FEATURES = ("user_views_24h", "user_engagements_24h", "video_views_24h")
LABELS = ("played", "watch_time_ms", "watch_ratio", "finished", "liked", "shared", "commented",
          "followed", "engaged")


@dataclass(frozen=True)
class JoinerConfig:
    label_window_s: int = 1800  # actions up to 30 minutes after the impression label it
    engaged_watch_ratio: float = 0.8  # watching this share of the video counts as engagement
    negative_rate: float = 0.5  # r: share of negatives kept
    history_window_s: int = 86_400  # history features look back this far
    seed: int = 0

    def __post_init__(self) -> None:
        # A day's examples read that day and its neighbours only: windows must fit in a day.
        if not 0 < self.label_window_s <= 86_400:
            raise ValueError("label_window_s must be in (0, 86400]")
        if not 0 < self.history_window_s <= 86_400:
            raise ValueError("history_window_s must be in (0, 86400]")
        if not 0 < self.negative_rate <= 1:
            raise ValueError("negative_rate must be in (0, 1]")
        if not 0 < self.engaged_watch_ratio:
            raise ValueError("engaged_watch_ratio must be > 0")


@dataclass
class JoinReport:
    built: dict[str, int]  # date -> examples written
    skipped: list[str]  # dates whose inputs had not changed
    # The Delta version of each events table this build read ({"events/views": 12, ...}; None:
    # the table did not exist). Pinning them reproduces the read (time travel).
    versions: dict[str, int | None] = field(default_factory=dict)


def _day(d: str, delta: int) -> str:
    return (dt.date.fromisoformat(d) + dt.timedelta(days=delta)).isoformat()


@dataclass(frozen=True)
class EventsSnapshot:
    """The events tables at one committed Delta version each: the files those versions name, by
    ``event_date``, from the Delta log (no listing of the tables' folders, no data read).

    ``pin`` takes the newest versions, or the ``versions`` given (time travel). Every read through
    one snapshot sees the same commits, however many batches land meanwhile.
    """

    lake: Lake
    versions: dict[str, int | None]  # events table ("events/views") -> version; None: no table
    # stream -> event_date (ISO) -> [(path or URI, size in bytes, file name)]
    by_day: dict[str, dict[str, list[tuple[str, int, str]]]]

    @classmethod
    def pin(cls, lake: Lake, streams: tuple[str, ...] = JOIN_STREAMS,
            versions: dict[str, int | None] | None = None) -> EventsSnapshot:
        pinned: dict[str, int | None] = {}
        by_day: dict[str, dict[str, list[tuple[str, int, str]]]] = {}
        for stream in streams:
            name = events_table(stream)
            want = (versions or {}).get(name)
            if versions is not None and name in versions and want is None:
                t = None  # pinned as "no table yet": read nothing, even if it exists now
            else:
                t = lake.store.table(name, want)
            pinned[name] = None if t is None else t.version()
            days: dict[str, list[tuple[str, int, str]]] = {}
            if t is not None:
                acts = pa.table(t.get_add_actions(flatten=True))
                if acts.num_rows:
                    base = lake.store.uri(name)
                    for path, size, day in zip(acts.column("path").to_pylist(), acts.column("size_bytes").to_pylist(),
                                               acts.column("partition.event_date").to_pylist()):
                        rel = urllib.parse.unquote(path)
                        days.setdefault(str(day), []).append((f"{base}/{rel}", int(size), rel.rsplit("/", 1)[-1]))
            by_day[stream] = {d: sorted(fs) for d, fs in days.items()}
        return cls(lake, pinned, by_day)

    def dates(self, stream: str) -> list[str]:
        """The dates the stream's pinned version holds files for."""
        return sorted(self.by_day.get(stream, {}))

    def files(self, stream: str, days: list[str]) -> list[tuple[str, int, str]]:
        out: list[tuple[str, int, str]] = []
        for d in dict.fromkeys(days):
            out += self.by_day.get(stream, {}).get(d, [])
        return out

    def relation(self, con: duckdb.DuckDBPyConnection, name: str, stream: str, days: list[str],
                 columns: dict[str, str], files: list[str] | None = None) -> None:
        """Temp view ``name``: ``columns`` of the stream's rows dated in ``days`` (or of exactly
        ``files``, paths this snapshot names), typed and empty when there are none."""
        cols = ", ".join(columns)
        paths = files if files is not None else [f for f, _, _ in self.files(stream, days)]
        if not paths:
            typed = ", ".join(f"NULL::{t} AS {c}" for c, t in columns.items())
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {typed} WHERE false")
            return
        if self.lake.store.is_local:
            listed = ", ".join(sql_path(f) for f in paths)  # a view cannot take a parameter
            # union_by_name: files written before a column was added read it as NULL
            source = f"read_parquet([{listed}], union_by_name=true)"
        else:
            # Object storage: DuckDB scans the committed files as an Arrow dataset.
            import pyarrow.dataset as pads

            source = f"_snap_{name}"
            con.register(source, pads.dataset([p[len("s3://"):] for p in paths], format="parquet",
                                              filesystem=self.lake.store.filesystem()))
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {cols} FROM {source}")


def impression_dates(lake_root: str | os.PathLike) -> list[str]:
    """The dates the committed impressions table holds rows for (from its Delta log)."""
    return EventsSnapshot.pin(Lake(lake_root), ("impressions",)).dates("impressions")


def _lake(lake_root: str | os.PathLike | Lake) -> Lake:
    return lake_root if isinstance(lake_root, Lake) else Lake(str(lake_root))


def _input_days(day: str) -> dict[str, list[str]]:
    # labels reach into the next day; history into the previous one
    around = [_day(day, -1), day, _day(day, 1)]
    return {"impressions": [day], "views": around, "interactions": around}


def _inputs(snap: EventsSnapshot, day: str) -> dict[str, list[tuple[str, int, str]]]:
    return {stream: snap.files(stream, days) for stream, days in _input_days(day).items()}


def _fingerprint(inputs: dict[str, list[tuple[str, int, str]]], config: JoinerConfig) -> str:
    h = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode())
    for stream in sorted(inputs):
        for _, size, name in inputs[stream]:
            # Committed files are immutable: name and size (from the Delta log) identify them.
            h.update(f"{stream}:{name}:{size}\n".encode())
    return h.hexdigest()


def examples_sql(config: JoinerConfig) -> str:
    """One SELECT over the temp views ``imp``, ``views`` and ``inter``: examples of ``imp``."""
    w_ms = config.label_window_s * 1000
    h_ms = config.history_window_s * 1000
    served = ",\n           ".join(
        # json_extract(...)::VARCHAR would keep the quotes: strings go through json_extract_string
        f"json_extract_string(served_features, '$.{k}') AS {k}" if t == "VARCHAR"
        else f"json_extract(served_features, '$.{k}')::{t} AS {k}"
        for k, t in SERVED_FEATURES.items()
    )
    # A server that logs the history counts it scored with (serving/server.py) is trained on
    # those; impressions that do not carry them (the simulator's) get them counted from the lake.
    served_history = ",\n           ".join(
        f"json_extract(served_features, '$.{k}')::BIGINT AS served_{k}" for k in HISTORY_FEATURES)
    return load_sql(__package__, "examples", served=served, served_history=served_history,
                    served_history_names=", ".join(f"served_{k}" for k in HISTORY_FEATURES),
                    label_window_ms=w_ms, history_window_ms=h_ms,
                    engaged_watch_ratio=repr(config.engaged_watch_ratio), negative_rate=repr(config.negative_rate),
                    seed=int(config.seed), negatives_kept_ppm=round(config.negative_rate * 1_000_000))


_IMP_COLUMNS = {
    "event_id": "VARCHAR", "ts_ms": "BIGINT", "user_id": "BIGINT", "video_id": "BIGINT",
    "creator_id": "BIGINT", "request_id": "VARCHAR", "position": "BIGINT", "surface": "VARCHAR",
    "candidate_source": "VARCHAR", "model_version": "VARCHAR", "score": "DOUBLE",
    "served_features": "JSON",
}
_VIEW_COLUMNS = {"ts_ms": "BIGINT", "user_id": "BIGINT", "video_id": "BIGINT", "request_id": "VARCHAR",
                 "watch_time_ms": "BIGINT", "video_duration_ms": "BIGINT"}
_INTER_COLUMNS = {"ts_ms": "BIGINT", "user_id": "BIGINT", "video_id": "BIGINT", "creator_id": "BIGINT",
                  "event_type": "VARCHAR", "request_id": "VARCHAR"}


def build_examples(
    lake_root: str | os.PathLike | Lake,
    config: JoinerConfig | None = None,
    *,
    dates: list[str] | None = None,
    force: bool = False,
    versions: dict[str, int | None] | None = None,
) -> JoinReport:
    """(Re)build the examples of each impression date whose inputs changed (all dates by default).

    Reads the events tables at the newest committed versions, or at ``versions`` (a
    ``JoinReport.versions`` or a date's ``read_lake_versions``: the same read again)."""
    config = config or JoinerConfig()
    lake = _lake(lake_root)
    snap = EventsSnapshot.pin(lake, JOIN_STREAMS, versions)
    report = JoinReport(built={}, skipped=[], versions=dict(snap.versions))
    built = _read_meta(lake)
    con = duckdb.connect()
    try:
        for day in dates if dates is not None else snap.dates("impressions"):
            dt.date.fromisoformat(day)  # a date, nothing else, goes into the predicates below
            inputs = _inputs(snap, day)
            fp = _fingerprint(inputs, config)
            if not force and built.get(day, {}).get("fingerprint") == fp:
                report.skipped.append(day)
                continue
            for view, stream, columns in (("imp", "impressions", _IMP_COLUMNS), ("views", "views", _VIEW_COLUMNS),
                                          ("inter", "interactions", _INTER_COLUMNS)):
                snap.relation(con, view, stream, _input_days(day)[stream], columns)
            table = con.sql(examples_sql(config)).to_arrow_table()
            table = table.append_column("event_date", pa.array([day] * table.num_rows, pa.string()))
            _replace_day(lake, EXAMPLES_TABLE, table, day, partition_by=["event_date"])
            # after the rows: a crash in between leaves a stale fingerprint, i.e. a rebuild
            meta = pa.table({"event_date": [day], "fingerprint": [fp],
                             "lake_versions_json": [json.dumps(snap.versions, sort_keys=True)],
                             "config_json": [json.dumps(asdict(config), sort_keys=True)]}, schema=EXAMPLES_META_SCHEMA)
            _replace_day(lake, EXAMPLES_META_TABLE, meta, day)
            report.built[day] = table.num_rows
    finally:
        con.close()
    return report


def _replace_day(lake: Lake, name: str, data: pa.Table, day: str, partition_by: list[str] | None = None) -> None:
    """Replace the rows of ``event_date = day`` in table ``name`` with ``data``: one Delta
    transaction (the first write creates the table; a concurrent rebuild of the date retries)."""
    lake.store.replace(name, data, where=("event_date", day), partition_by=partition_by)


def _read_meta(lake: Lake) -> dict[str, dict]:
    """Per built date: {"fingerprint", "lake_versions", "config"} from ``examples_meta``."""
    ds = lake.store.dataset(EXAMPLES_META_TABLE)
    if ds is None:
        return {}
    out = {}
    for r in ds.to_table().to_pylist():
        out[r["event_date"]] = {"fingerprint": r["fingerprint"],
                                "lake_versions": json.loads(r["lake_versions_json"]) if r["lake_versions_json"] else None,
                                "config": json.loads(r["config_json"]) if r["config_json"] else None}
    return out


def examples_between(lake_root: str | os.PathLike, config: JoinerConfig, after_ms: int,
                     until_ms: int, *, versions: dict[str, int | None] | None = None) -> pa.Table:
    """Examples of the impressions with ``after_ms < ts_ms <= until_ms``, labelled and sampled
    exactly as ``build_examples`` would (the online path's input: same SQL, a time slice), from
    the newest committed versions of the events tables (or ``versions``)."""
    snap = EventsSnapshot.pin(Lake(lake_root), JOIN_STREAMS, versions)
    first = dt.datetime.fromtimestamp(max(after_ms, 0) / 1000, dt.timezone.utc).date()
    last = dt.datetime.fromtimestamp(max(until_ms, 0) / 1000, dt.timezone.utc).date()
    days = [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    wanted: dict[str, list[str]] = {"impressions": [], "views": [], "interactions": []}
    for day in days:
        for stream, around in _input_days(day).items():
            wanted[stream] += [d for d in around if d not in wanted[stream]]
    con = duckdb.connect()
    try:
        snap.relation(con, "imp_all", "impressions", wanted["impressions"], _IMP_COLUMNS)
        con.execute(f"CREATE OR REPLACE TEMP VIEW imp AS SELECT * FROM imp_all "
                    f"WHERE ts_ms > {int(after_ms)} AND ts_ms <= {int(until_ms)}")
        snap.relation(con, "views", "views", wanted["views"], _VIEW_COLUMNS)
        snap.relation(con, "inter", "interactions", wanted["interactions"], _INTER_COLUMNS)
        return con.sql(examples_sql(config)).to_arrow_table()
    finally:
        con.close()


def read_fingerprint(lake_root: str | os.PathLike | Lake, day: str) -> str | None:
    """The fingerprint of the inputs ``day``'s examples were built from (None: not built)."""
    return _read_meta(_lake(lake_root)).get(day, {}).get("fingerprint")


def read_lake_versions(lake_root: str | os.PathLike | Lake, day: str) -> dict[str, int | None] | None:
    """The events tables' versions ``day``'s examples were built from (None: not built)."""
    return _read_meta(_lake(lake_root)).get(day, {}).get("lake_versions")


def examples_lake_versions(lake_root: str | os.PathLike | Lake) -> dict[str, dict[str, int | None] | None]:
    """Per impression date, the events tables' versions its examples were built from (from
    ``examples_meta``): what a model trained on them read, and how to read it again."""
    return {d: m["lake_versions"] for d, m in sorted(_read_meta(_lake(lake_root)).items())}


def examples_source(con: duckdb.DuckDBPyConnection, lake_root: str | os.PathLike | Lake, *,
                    days: list[str] | None = None, version: int | None = None) -> str | None:
    """A FROM-clause item over the examples table's committed snapshot (with ``event_date``),
    only ``days`` if given; None when there are no examples."""
    return table_source(con, _lake(lake_root), EXAMPLES_TABLE, days=days, version=version)


def read_examples(lake_root: str | os.PathLike | Lake, *, where: str = "true", order_by: str | None = "ts_ms",
                  days: list[str] | None = None, version: int | None = None) -> pa.Table | None:
    """The committed examples (``where``: a SQL condition), as an Arrow table; None when there are none."""
    con = duckdb.connect()
    try:
        src = examples_source(con, lake_root, days=days, version=version)
        if src is None:
            return None
        order = f" ORDER BY {order_by}" if order_by else ""
        # event_date as DATE from either store: DuckDB's hive reader casts the local folders' names,
        # an object store's Arrow dataset gives the partition values as the strings they are.
        return con.sql(f"SELECT * REPLACE (CAST(event_date AS DATE) AS event_date) FROM {src} "
                       f"WHERE {where}{order}").to_arrow_table()
    finally:
        con.close()


def has_examples(lake_root: str | os.PathLike | Lake) -> bool:
    """Whether the examples table's newest snapshot names any file."""
    return _lake(lake_root).store.row_count(EXAMPLES_TABLE) > 0
