"""The streaming joiner: impressions wait in keyed state until their label window closes, then
are emitted once, labelled exactly as the batch joiner labels them (Monolith's Flink joiner, on
the lake's micro-batches).

Event time, not arrival time, decides. The watermark is ``W = (newest event time seen) -
allowed_lateness``: the joiner assumes every event with a time below W has arrived. An impression
at ``t`` is emitted by the first step after which ``t + label_window < W``: every action that can
label it (``t <= action <= t + label_window``) and every event its history features count
(``t - history_window <= e < t``) is then in the state, so the joiner's one SQL
(``joiner.examples_sql``) labels and samples it as the batch join over the whole lake does.

State (all keyed by event time, pruned as the watermark passes):

- ``pending``: impressions whose window is open, the impression row as logged (its served
  features included);
- ``views`` / ``inter``: the plays and interactions of the last ``label_window +
  history_window`` before the watermark (at least a day): what labels and history features of
  impressions still to be emitted can read, and what the serving counters count
  (``features/online.py``, written after each step). Actions that come before their impression
  wait here too;
- ``closed``: the keys (request_id, video_id, user_id, time) of impressions already emitted, over
  the same horizon, so that an action arriving after its impression's window closed is counted
  as ``late_actions`` instead of vanishing. An impression arriving after its own window closed is
  counted as ``late_impressions`` and not emitted (the daily batch join still labels it: the lake
  holds every event);
- ``consumed``: the ingest batches already read (each committed batch is joined once), by id for
  those ingested in the last ``CONSUMED_SLACK_MS`` before the newest one read, and as a floor on
  ``ingested_at_ms`` below which every batch has been read: the set stays bounded however long the
  joiner runs. (A batch's ``ingested_at_ms`` is when it started; one that took longer than the
  slack to commit would be missed here, and only here: the daily batch join reads the lake.)

Input: each step reads the ingest log (a Delta table) for the batches committed since the last
step, then the rows of those batches from the events tables at one pinned Delta version each
(``joiner.EventsSnapshot``; the ingest log is committed after a batch's events, so every batch it
names is in them): the files the snapshot's add actions name for the batch (``part-<batch>-*``),
or, when those no longer hold the batch's logged rows (compaction merged them), the batch's rows
found by ``_batch_id`` in the whole snapshot. The versions read are recorded in the step's commit
and state (``lake_versions``).

Durability, on the lake's store (local folder or ``s3://`` bucket; ``tables.TableStore``): a step
writes its new state and its examples as Parquet files under keys of its own attempt,
``_stream_join/state-<seq>-<attempt>/``, never overwritten; then commits by a compare-and-swap on
the small Delta table ``_stream_join/commits`` (``TableStore.swap``: app transaction
``stream-join`` moved from ``seq - 1`` to ``seq``, one row naming the attempt and the step's
metadata). Of two runs committing the same seq (concurrent runs on object storage, where no lock
is shared) exactly one lands; the other discards its files and starts again from the winner's
state. Only then are the committed attempt's examples appended to the Delta table
``stream_examples`` (columns ``seq`` and ``closed_below_ms`` first), with the app transaction id
``stream-join:<seq>``: idempotent, and every run publishes the committed step's examples before
it starts the next one, so a kill -9 between the commit and the publication is made good by the
next run. A kill -9 anywhere before the commit leaves the previous state committed; the next run
redoes the step, from the same input, with the same seq, under a new attempt. Readers read
``stream_examples`` at a committed Delta version, and only the steps published up to the
committed seq: never an uncommitted attempt's rows. On local disk runs also take turns on a
``flock`` (``_stream_join/_lock``: no wasted work); correctness does not depend on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tiktok_pipelines.features.online import COUNTERS_TABLE, compute_counters, write_counters
from tiktok_pipelines.ingest.engine import Lake
from tiktok_pipelines import publish
from tiktok_pipelines.lake import exclusive_lock
from tiktok_pipelines.sqlfiles import load_sql
from tiktok_pipelines.tables import TableStore
from tiktok_pipelines.training.joiner import (
    _IMP_COLUMNS,
    _INTER_COLUMNS,
    _VIEW_COLUMNS,
    JOIN_STREAMS,
    EventsSnapshot,
    JoinerConfig,
    examples_sql,
)

STATE_DIR = "_stream_join"
COMMITS_TABLE = f"{STATE_DIR}/commits"  # the commit point: one row, the committed step
EXAMPLES_TABLE = "stream_examples"
STREAM_APP = "stream-join"  # its app transaction version in COMMITS_TABLE: the committed seq
STEP_COLUMNS = ("seq", "closed_below_ms")  # what stream_examples adds before the examples' columns
COMMIT_SCHEMA = pa.schema([("seq", pa.int64()), ("attempt", pa.string()), ("meta", pa.string())])
COUNTER_HORIZON_MS = 86_400_000  # the online counters count a day back
# Event time may run this far ahead of the wall clock by default (collectors' clocks; the ingest's
# bound on flush times, ``IngestPolicy.clock_ahead_seconds``, which deployments pass as ``clock_skew_ms``): the watermark is never moved past now + this. One event dated
# 2099 in the lake (a name-dated landing file, before the ingest bounded names by the clock) once
# closed every window, moved trained_through to 2099 and expired every embedding row.
MAX_CLOCK_SKEW_MS = 300_000
CONSUMED_SLACK_MS = 6 * 3_600_000  # batches ingested this long before the newest read are kept by id

# The state's tables: the join's input columns, as the lake types them.
_ARROW = {"VARCHAR": pa.string(), "BIGINT": pa.int64(), "DOUBLE": pa.float64(), "JSON": pa.string()}


def _schema(columns: dict[str, str]) -> pa.Schema:
    return pa.schema([(c, _ARROW[t]) for c, t in columns.items()])


IMP_SCHEMA = _schema(_IMP_COLUMNS)
VIEW_SCHEMA = _schema(_VIEW_COLUMNS)
INTER_SCHEMA = _schema(_INTER_COLUMNS)
CLOSED_SCHEMA = pa.schema([("request_id", pa.string()), ("video_id", pa.int64()), ("user_id", pa.int64()),
                           ("ts_ms", pa.int64())])


@dataclass(frozen=True)
class StreamConfig:
    allowed_lateness_s: int = 120  # events may arrive this much behind the newest event time seen

    def __post_init__(self) -> None:
        if self.allowed_lateness_s < 0:
            raise ValueError("allowed_lateness_s must be >= 0")


@dataclass
class StepCounts:
    impressions_in: int = 0
    actions_in: int = 0
    emitted_impressions: int = 0  # impressions whose window closed in this step (before sampling)
    examples: int = 0  # of which kept by the downsampling
    late_actions: int = 0  # actions that arrived after their impression's window closed
    late_impressions: int = 0  # impressions that arrived after their own window closed
    pending: int = 0  # impressions waiting after the step
    watermark_ms: int | None = None

    def add(self, other: StepCounts) -> None:
        for k in ("impressions_in", "actions_in", "emitted_impressions", "examples", "late_actions",
                  "late_impressions"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.pending, self.watermark_ms = other.pending, other.watermark_ms


@dataclass
class JoinState:
    pending: pa.Table = field(default_factory=IMP_SCHEMA.empty_table)
    views: pa.Table = field(default_factory=VIEW_SCHEMA.empty_table)
    inter: pa.Table = field(default_factory=INTER_SCHEMA.empty_table)
    closed: pa.Table = field(default_factory=CLOSED_SCHEMA.empty_table)
    max_ts_ms: int | None = None
    totals: StepCounts = field(default_factory=StepCounts)


def _cast(table: pa.Table | None, schema: pa.Schema) -> pa.Table:
    if table is None or table.num_rows == 0:
        return schema.empty_table()
    return table.select(schema.names).cast(schema)


class StreamJoiner:
    """The join's logic on in-memory tables: ``step`` takes one micro-batch of newly arrived
    events (any order, any mix of days) and returns the examples whose windows it closed."""

    def __init__(self, config: JoinerConfig, stream: StreamConfig | None = None,
                 state: JoinState | None = None) -> None:
        self.config = config
        self.stream = stream or StreamConfig()
        self.state = state or JoinState()

    @property
    def watermark_ms(self) -> int | None:
        m = self.state.max_ts_ms
        return None if m is None else m - self.stream.allowed_lateness_s * 1000

    def step(self, impressions: pa.Table | None = None, views: pa.Table | None = None,
             interactions: pa.Table | None = None, *, now_ms: int | None = None,
             clock_skew_ms: int = MAX_CLOCK_SKEW_MS) -> tuple[pa.Table, StepCounts]:
        """Event time is bounded by ``now_ms`` (default: the wall clock) + ``clock_skew_ms``: see
        ``MAX_CLOCK_SKEW_MS``."""
        ceiling = (int(time.time() * 1000) if now_ms is None else now_ms) + clock_skew_ms
        arrived, vw, it = _cast(impressions, IMP_SCHEMA), _cast(views, VIEW_SCHEMA), _cast(interactions, INTER_SCHEMA)
        imp = arrived
        w_ms = self.config.label_window_s * 1000
        h_ms = self.config.history_window_s * 1000
        st = self.state
        before = self.watermark_ms
        counts = StepCounts(impressions_in=imp.num_rows, actions_in=vw.num_rows + it.num_rows)
        con = duckdb.connect()
        try:
            con.execute("SET threads = 1")  # small tables: threads cost more than they give here
            for name, table in (("new_imp", imp), ("new_views", vw), ("new_inter", it),
                                ("st_pending", st.pending), ("st_closed", st.closed)):
                con.register(name, table)
            if before is not None:
                # Late impressions: their window had closed before they arrived.
                counts.late_impressions = con.execute(
                    f"SELECT count(*) FROM new_imp WHERE ts_ms + {w_ms} < {before}").fetchall()[0][0]
                imp = con.sql(f"SELECT * FROM new_imp WHERE ts_ms + {w_ms} >= {before}").to_arrow_table()
            # Late actions: they name an impression that was already emitted, inside its window.
            counts.late_actions = con.execute(
                load_sql(__package__, "late_actions", label_window_ms=w_ms)).fetchall()[0][0]
            # every arrival moves event time, a late impression's too
            raw_max = max((pa.compute.max(t.column("ts_ms")).as_py() for t in (arrived, vw, it) if t.num_rows),
                          default=None)
            if raw_max is not None:
                st.max_ts_ms = raw_max if st.max_ts_ms is None else max(st.max_ts_ms, raw_max)
            if st.max_ts_ms is not None and st.max_ts_ms > ceiling:
                # Events from the future wait in the state until the clock reaches them; a state
                # saved with such a mark (before this bound) is pulled back here too.
                st.max_ts_ms = ceiling
            mark = self.watermark_ms
            pending = pa.concat_tables([st.pending, _cast(imp, IMP_SCHEMA)])
            views_all = pa.concat_tables([st.views, vw])
            inter_all = pa.concat_tables([st.inter, it])
            if mark is None:
                st.pending, st.views, st.inter = pending, views_all, inter_all
                counts.pending, counts.watermark_ms = pending.num_rows, mark
                st.totals.add(counts)
                return _empty_examples(self.config), counts
            con.register("pending_all", pending)
            ready = con.sql(f"SELECT * FROM pending_all WHERE ts_ms + {w_ms} < {mark}").to_arrow_table()
            waiting = con.sql(f"SELECT * FROM pending_all WHERE ts_ms + {w_ms} >= {mark}").to_arrow_table()
            con.register("imp", ready)
            con.register("views", views_all)
            con.register("inter", inter_all)
            examples = con.sql(examples_sql(self.config)).to_arrow_table()
            closed = pa.concat_tables([st.closed, ready.select(CLOSED_SCHEMA.names).cast(CLOSED_SCHEMA)])
            # What an impression still to be emitted can read: events from (its time - history)
            # on; every such impression has t + window >= W, so t - history >= W - window - history.
            # And the serving counters' day (features/online.py): the last 24 h of event time.
            horizon = min(mark - w_ms - h_ms, st.max_ts_ms - COUNTER_HORIZON_MS)
            con.register("views_keep", views_all)
            con.register("inter_keep", inter_all)
            con.register("closed_keep", closed)
            st.views = con.sql(f"SELECT * FROM views_keep WHERE ts_ms >= {horizon}").to_arrow_table()
            st.inter = con.sql(f"SELECT * FROM inter_keep WHERE ts_ms >= {horizon}").to_arrow_table()
            st.closed = con.sql(f"SELECT * FROM closed_keep WHERE ts_ms >= {horizon}").to_arrow_table()
            st.pending = waiting
        finally:
            con.close()
        counts.emitted_impressions = ready.num_rows
        counts.examples = examples.num_rows
        counts.pending, counts.watermark_ms = st.pending.num_rows, mark
        st.totals.add(counts)
        return examples, counts


def _empty_examples(config: JoinerConfig) -> pa.Table:
    con = duckdb.connect()
    try:
        for name, schema in (("imp", IMP_SCHEMA), ("views", VIEW_SCHEMA), ("inter", INTER_SCHEMA)):
            con.register(name, schema.empty_table())
        return con.sql(examples_sql(config)).to_arrow_table()
    finally:
        con.close()


# --- on the lake ------------------------------------------------------------------------------

@dataclass
class StreamReport:
    seq: int  # the committed step (0: none yet)
    batches: int  # ingest batches joined by this run
    counts: StepCounts
    seconds: float
    recovered: list[str] = field(default_factory=list)  # uncommitted leftovers a crash had left
    # The Delta version of each events table the step read (empty: no step ran)
    versions: dict[str, int | None] = field(default_factory=dict)


def _lake(lake_root: str | os.PathLike | Lake) -> Lake:
    return lake_root if isinstance(lake_root, Lake) else Lake(str(lake_root))


def stream_root(lake_root: str | os.PathLike | Lake) -> str:
    """Where the join's state lives: a local path, or an ``s3://`` URI."""
    return _lake(lake_root).store.uri(STATE_DIR)


def _attempt_name(seq: int, attempt: str) -> str:
    return f"state-{seq:08d}-{attempt}"


def _attempt_dir(store: TableStore, seq: int, attempt: str) -> str:
    return store.fs_path(STATE_DIR, _attempt_name(seq, attempt))


def _txn(seq: int) -> str:
    """The app transaction id a step's examples are appended to ``stream_examples`` with."""
    return f"{STREAM_APP}:{seq:08d}"


def _committed(store: TableStore) -> tuple[int, str | None, dict]:
    """(seq, attempt, metadata) of the committed step; (0, None, {}) before the first."""
    t = store.table(COMMITS_TABLE)
    seq = (t.transaction_version(STREAM_APP) or 0) if t is not None else 0
    if seq == 0:
        return 0, None, {}
    rows = store.arrow_dataset(t, COMMITS_TABLE).to_table().to_pylist()
    row = next(r for r in rows if r["seq"] == seq)  # an overwrite leaves only this row
    return seq, row["attempt"], json.loads(row["meta"])


def committed_seq(lake_root: str | os.PathLike | Lake) -> int:
    return _committed(_lake(lake_root).store)[0]


def committed_meta(lake_root: str | os.PathLike | Lake) -> dict:
    """The committed step's metadata (seq, examples, closed_below_ms, lake_versions, ...); {} before the first."""
    return _committed(_lake(lake_root).store)[2]


def _attempts(store: TableStore, fs: pafs.FileSystem) -> list[tuple[int, str, str]]:
    """(seq, attempt, path) of every state folder on the store, committed or not."""
    out = []
    for info in fs.get_file_info(pafs.FileSelector(store.fs_path(STATE_DIR), allow_not_found=True)):
        parts = info.base_name.split("-")
        if info.type == pafs.FileType.Directory and len(parts) == 3 and parts[0] == "state" and parts[1].isdigit():
            out.append((int(parts[1]), parts[2], info.path))
    return sorted(out)


def _delete_dir(fs: pafs.FileSystem, path: str) -> None:
    try:
        fs.delete_dir(path)
    except FileNotFoundError:
        pass  # another run cleaned it first


def _clean(store: TableStore, fs: pafs.FileSystem, seq: int, attempt: str | None, *, locked: bool) -> list[str]:
    """Remove state folders no run will read: older than the step before the committed one
    (kept: a run that loaded it may still be reading it), and other attempts at the committed
    seq (they lost, or crashed). Attempts past the committed seq may be a concurrent run's work in
    progress: removed only under the local lock (``locked``: then they are a crash's leftovers,
    returned)."""
    removed = []
    for s, a, path in _attempts(store, fs):
        crashed = locked and s > seq
        if s < seq - 1 or (s == seq and a != attempt) or crashed:
            _delete_dir(fs, path)
            if crashed:
                removed.append(f"{STATE_DIR}/{_attempt_name(s, a)}")
    return removed


def _load_state(store: TableStore, fs: pafs.FileSystem, seq: int, attempt: str | None,
                meta: dict) -> tuple[JoinState, dict[str, int], dict]:
    if seq == 0:
        return JoinState(), {}, {}
    d = _attempt_dir(store, seq, attempt)

    def read(name: str, schema: pa.Schema) -> pa.Table:
        return pq.read_table(f"{d}/{name}.parquet", filesystem=fs).cast(schema)

    state = JoinState(
        pending=read("pending", IMP_SCHEMA),
        views=read("views", VIEW_SCHEMA),
        inter=read("inter", INTER_SCHEMA),
        closed=read("closed", CLOSED_SCHEMA),
        max_ts_ms=meta["max_ts_ms"],
        totals=StepCounts(**meta["totals"]),
    )
    return state, dict(meta["consumed"]), meta["config"]


def _write_attempt(store: TableStore, fs: pafs.FileSystem, seq: int, attempt: str, state: JoinState,
                   examples: pa.Table) -> None:
    """The step's new state and examples, under keys of this attempt only (nothing overwritten)."""
    d = _attempt_dir(store, seq, attempt)
    if store.is_local:
        Path(d).mkdir(parents=True)
    for name, table in (("pending", state.pending), ("views", state.views), ("inter", state.inter),
                        ("closed", state.closed), ("examples", examples)):
        pq.write_table(table, f"{d}/{name}.parquet", filesystem=fs, compression="zstd")
    if store.is_local:
        publish.fsync_tree(Path(d))


def _publish(store: TableStore, fs: pafs.FileSystem, seq: int, attempt: str, meta: dict,
             examples: pa.Table | None = None) -> None:
    """Append the committed step's examples to ``stream_examples``, once (app transaction id)."""
    if not meta.get("examples") or store.committed(EXAMPLES_TABLE, _txn(seq)):
        return
    if examples is None:
        examples = pq.read_table(f"{_attempt_dir(store, seq, attempt)}/examples.parquet", filesystem=fs)
    store.commit(EXAMPLES_TABLE, examples, txn=_txn(seq))


def _published_seq(store: TableStore) -> int:
    """The newest step whose examples readers may read: the committed one once published (every
    run publishes it before it steps further, so all earlier ones are)."""
    seq, _, meta = _committed(store)
    if seq and meta.get("examples") and not store.committed(EXAMPLES_TABLE, _txn(seq)):
        return seq - 1
    return seq


def _with_step(examples: pa.Table, seq: int, closed_below_ms: int | None) -> pa.Table:
    n = examples.num_rows
    return pa.Table.from_arrays(
        [pa.array([seq] * n, pa.int64()), pa.array([closed_below_ms] * n, pa.int64()), *examples.columns],
        names=[*STEP_COLUMNS, *examples.column_names])


@contextlib.contextmanager
def _turns(store: TableStore):
    """Local runs take turns (a flock: a concurrent run would redo the same work and lose the
    commit); on object storage the compare-and-swap alone keeps them correct."""
    if not store.is_local:
        yield
        return
    root = Path(store.uri(STATE_DIR))
    if (root / "CURRENT").exists():
        raise ValueError(f"{root} holds the streaming join's state in the former layout (CURRENT); remove it, "
                         f"{store.uri(EXAMPLES_TABLE)} and {store.uri(COUNTERS_TABLE)} to start over")
    root.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(root / "_lock"):
        yield


def _prune_consumed(consumed: dict[str, int]) -> dict[str, int]:
    if not consumed:
        return consumed
    floor = max(consumed.values()) - CONSUMED_SLACK_MS
    return {b: ts for b, ts in consumed.items() if ts >= floor}



def _read_batches(snap: EventsSnapshot, stream: str, batches: list[str], logged_rows: int,
                  columns: dict[str, str]) -> pa.Table | None:
    """The rows ``batches`` committed to a stream, from the snapshot: their own files (named for
    the batch: ``part-<batch>-c<chunk>.parquet``), chosen from its add actions; when those do not
    hold the ``logged_rows`` the ingest log counts (compaction merged them into other files), the
    batches' rows by ``_batch_id`` in every file of the snapshot."""
    if not batches or logged_rows == 0:
        return None
    prefixes = tuple(f"part-{b}-" for b in batches)
    own = [path for day in snap.dates(stream) for path, _, name in snap.files(stream, [day])
           if name.startswith(prefixes)]
    ids = ", ".join("'" + b.replace("'", "''") + "'" for b in batches)
    cols = ", ".join(columns)
    con = duckdb.connect()
    try:
        con.execute("SET threads = 1")
        snap.relation(con, "batch_rows", stream, [], {**columns, "_batch_id": "VARCHAR"}, files=own)
        table = con.sql(f"SELECT {cols} FROM batch_rows WHERE _batch_id IN ({ids})").to_arrow_table()
        if table.num_rows != logged_rows:
            snap.relation(con, "batch_rows", stream, snap.dates(stream), {**columns, "_batch_id": "VARCHAR"})
            table = con.sql(f"SELECT {cols} FROM batch_rows WHERE _batch_id IN ({ids})").to_arrow_table()
    finally:
        con.close()
    return table



def run_stream_join(lake_root: str | os.PathLike | Lake, config: JoinerConfig, stream: StreamConfig | None = None,
                    *, max_batches: int | None = None, now_ms: int | None = None,
                    clock_skew_ms: int = MAX_CLOCK_SKEW_MS, _after_part=None, _after_commit=None) -> StreamReport:
    """Join the ingest batches committed since the last run as one micro-batch; commit its
    examples and the new state. Safe to run concurrently (compare-and-swap; a lock too on local
    disk) and after a kill -9 (the step is redone)."""
    started = time.perf_counter()
    lake = _lake(lake_root)
    stream = stream or StreamConfig()
    recovered: list[str] = []
    with _turns(lake.store):
        while True:
            report = _step(lake, config, stream, recovered, max_batches=max_batches, now_ms=now_ms,
                           clock_skew_ms=clock_skew_ms, after_part=_after_part, after_commit=_after_commit)
            if report is not None:
                report.seconds = time.perf_counter() - started
                return report
            # Lost the commit to a concurrent run: again from its state (its batches are consumed).


def _step(lake: Lake, config: JoinerConfig, stream: StreamConfig, recovered: list[str], *,
          max_batches: int | None, now_ms: int | None, clock_skew_ms: int, after_part,
          after_commit) -> StreamReport | None:
    """One step from the committed state; None when another run committed the same seq first."""
    store = lake.store
    fs = store.filesystem()
    seq, attempt, meta = _committed(store)
    recovered.extend(_clean(store, fs, seq, attempt, locked=store.is_local))
    if seq:
        _publish(store, fs, seq, attempt, meta)  # a run killed between its commit and this
    state, consumed, saved_config = _load_state(store, fs, seq, attempt, meta)
    now_config = {"joiner": asdict(config), "stream": asdict(stream)}
    if saved_config and saved_config != now_config:
        raise ValueError(f"the streaming join's state was built with {saved_config}, not {now_config}: "
                         f"remove {store.uri(STATE_DIR)}, {store.uri(EXAMPLES_TABLE)} and "
                         f"{store.uri(COUNTERS_TABLE)} to start over")
    log = lake.read_ingest_log()
    floor = max(consumed.values()) - CONSUMED_SLACK_MS if consumed else None
    order = sorted({(ts, b) for b, ts in zip(log.column("batch_id").to_pylist(),
                                             log.column("ingested_at_ms").to_pylist())
                    if b not in consumed and (floor is None or ts >= floor)})[:max_batches]
    new = [b for _, b in order]
    if not new:
        return StreamReport(seq, 0, StepCounts(pending=state.pending.num_rows,
                                               watermark_ms=StreamJoiner(config, stream, state).watermark_ms),
                            0.0, list(recovered))
    # The events tables after the log: every batch it names is committed in them.
    snap = EventsSnapshot.pin(lake, JOIN_STREAMS)
    wanted = set(new)
    logged = {s: 0 for s in JOIN_STREAMS}
    for b, s, n in zip(log.column("batch_id").to_pylist(), log.column("stream").to_pylist(),
                       log.column("rows_lake").to_pylist()):
        if b in wanted and s in logged:
            logged[s] += n or 0
    joiner = StreamJoiner(config, stream, state)
    examples, counts = joiner.step(
        _read_batches(snap, "impressions", new, logged["impressions"], _IMP_COLUMNS),
        _read_batches(snap, "views", new, logged["views"], _VIEW_COLUMNS),
        _read_batches(snap, "interactions", new, logged["interactions"], _INTER_COLUMNS),
        now_ms=now_ms, clock_skew_ms=clock_skew_ms,
    )
    nxt, token = seq + 1, uuid.uuid4().hex[:12]
    # every impression this step emits is before closed_below_ms (the steps tile event time):
    # readers skip whole steps by it
    closed_below = None if counts.watermark_ms is None else counts.watermark_ms - config.label_window_s * 1000
    examples = _with_step(examples, nxt, closed_below)
    new_meta = {"seq": nxt, "max_ts_ms": joiner.state.max_ts_ms,
                "consumed": _prune_consumed({**consumed, **{b: ts for ts, b in order}}),
                "totals": asdict(joiner.state.totals), "config": now_config, "lake_versions": snap.versions,
                "closed_below_ms": closed_below, "examples": examples.num_rows}
    _write_attempt(store, fs, nxt, token, joiner.state, examples)
    if after_part is not None:  # tests: a crash between the step's files and the commit
        after_part()
    row = pa.table({"seq": [nxt], "attempt": [token], "meta": [json.dumps(new_meta)]}, schema=COMMIT_SCHEMA)
    if not store.swap(COMMITS_TABLE, row, app=STREAM_APP, expected=seq):  # the commit
        _delete_dir(fs, _attempt_dir(store, nxt, token))
        return None
    if after_commit is not None:  # tests: a crash between the commit and the examples' append
        after_commit()
    _publish(store, fs, nxt, token, new_meta, examples)
    _clean(store, fs, nxt, token, locked=False)
    if joiner.state.max_ts_ms is not None:
        # The serving stack's counters, from the day of events the state keeps (written after
        # the commit: a crash here leaves them one step behind, never ahead of the state; a
        # slower run of an earlier step never writes over them)
        write_counters(store, compute_counters(joiner.state.views, joiner.state.inter, joiner.state.max_ts_ms),
                       joiner.state.max_ts_ms, seq=nxt)
    return StreamReport(nxt, len(new), counts, 0.0, list(recovered), dict(snap.versions))


def _read(store: TableStore, after_seq: int, through_seq: int, after_ms: int | None = None) -> pa.Table | None:
    """The published examples of steps ``after_seq < seq <= through_seq`` (and ``ts_ms >
    after_ms``), in emission order, without the step columns; None when there are none."""
    if through_seq <= after_seq:
        return None
    ds = store.dataset(EXAMPLES_TABLE)
    if ds is None:
        return None
    cond = (pa.compute.field("seq") > after_seq) & (pa.compute.field("seq") <= through_seq)
    if after_ms is not None:
        cond = cond & (pa.compute.field("ts_ms") > after_ms)
    table = ds.to_table(filter=cond)
    if table.num_rows == 0:
        return None
    table = table.take(pa.compute.sort_indices(table, [("seq", "ascending")]))  # a stable sort
    return table.drop_columns(list(STEP_COLUMNS))


def read_stream_examples(lake_root: str | os.PathLike | Lake, *, after_seq: int = 0,
                         through_seq: int | None = None) -> pa.Table | None:
    """The committed steps' examples ``after_seq < seq <= through_seq`` (default: the committed
    seq), in emission order; None when there are none."""
    store = _lake(lake_root).store
    last = _published_seq(store)
    return _read(store, after_seq, last if through_seq is None else min(through_seq, last))


def _skip_to(store: TableStore, after_ms: int) -> int:
    """The newest step all of whose examples are at or before ``after_ms`` (``closed_below_ms - 1
    <= after_ms``), from the Delta log's per-file statistics: no data is read."""
    acts = store.add_actions(EXAMPLES_TABLE)
    if acts is None or acts.num_rows == 0 or "max.closed_below_ms" not in acts.column_names:
        return 0
    best = 0
    for s, below in zip(acts.column("max.seq").to_pylist(), acts.column("max.closed_below_ms").to_pylist()):
        if s is not None and below is not None and below - 1 <= after_ms:
            best = max(best, s)
    return best


def stream_examples_after(lake_root: str | os.PathLike | Lake, after_ms: int, *,
                          after_seq: int | None = None) -> pa.Table | None:
    """Committed examples with ``ts_ms > after_ms``, from the steps after ``after_seq``; without
    it (after a batch retrain), from the first step that closed something after ``after_ms``
    (found in the Delta log's statistics, not the rows)."""
    store = _lake(lake_root).store
    last = _published_seq(store)
    if after_seq is None:
        after_seq = _skip_to(store, after_ms)
    return _read(store, after_seq, last, after_ms)


def committed_watermark_ms(lake_root: str | os.PathLike | Lake) -> int | None:
    """The event-time watermark of the committed state (None before the first step)."""
    meta = committed_meta(lake_root)
    if not meta or meta["max_ts_ms"] is None:
        return None
    return meta["max_ts_ms"] - meta["config"]["stream"]["allowed_lateness_s"] * 1000
