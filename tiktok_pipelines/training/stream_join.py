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
found by ``_batch_id`` in the whole snapshot. The versions read are recorded in the step's part
and state (``lake_versions``).

Durability: a step writes its examples as ``stream_examples/part-<seq>.parquet``, then the new
state as ``_stream_join/state-<seq>/``, then points ``_stream_join/CURRENT`` at it (one atomic
rename): the commit. A kill -9 anywhere before leaves the previous state current; the next run
discards the uncommitted part and state and redoes the step, from the same input, with the same
seq. Readers list parts up to the committed seq only.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from tiktok_pipelines.features.online import compute_counters, write_counters
from tiktok_pipelines.ingest.engine import Lake
from tiktok_pipelines.lake import atomic_replace, atomic_write_json, exclusive_lock, fsync_path
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
EXAMPLES_DIR = "stream_examples"
CURRENT = "CURRENT"
PART_KEY = b"tiktok_pipelines.stream_examples"
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
            counts.late_actions = con.execute(f"""
                SELECT count(*) FROM (
                    SELECT request_id, video_id, user_id, ts_ms FROM new_views
                    UNION ALL SELECT request_id, video_id, user_id, ts_ms FROM new_inter) a
                JOIN st_closed c USING (request_id, video_id, user_id)
                WHERE a.ts_ms BETWEEN c.ts_ms AND c.ts_ms + {w_ms}""").fetchall()[0][0]
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


def stream_root(lake_root: str | os.PathLike) -> Path:
    return Path(lake_root) / STATE_DIR


def part_path(lake_root: str | os.PathLike, seq: int) -> Path:
    return Path(lake_root) / EXAMPLES_DIR / f"part-{seq:08d}.parquet"


def committed_seq(lake_root: str | os.PathLike) -> int:
    cur = stream_root(lake_root) / CURRENT
    return int(json.loads(cur.read_text())["seq"]) if cur.exists() else 0


def _recover(lake_root: Path, seq: int) -> list[str]:
    """Remove what a step that never committed left: parts and state directories past ``seq``."""
    removed = []
    root = stream_root(lake_root)
    for d in sorted(root.glob("state-*")) if root.is_dir() else []:
        if d.name != f"state-{seq:08d}":
            shutil.rmtree(d)
            removed.append(str(d.relative_to(lake_root)))
    parts = Path(lake_root) / EXAMPLES_DIR
    for p in sorted(parts.glob("part-*.parquet")) if parts.is_dir() else []:
        if int(p.stem.split("-")[1]) > seq:
            p.unlink()
            removed.append(str(p.relative_to(lake_root)))
    for p in sorted(parts.glob(".*.tmp")) if parts.is_dir() else []:
        p.unlink()
        removed.append(str(p.relative_to(lake_root)))
    return removed


def _load_state(lake_root: Path, seq: int) -> tuple[JoinState, dict[str, int], dict]:
    if seq == 0:
        return JoinState(), {}, {}
    d = stream_root(lake_root) / f"state-{seq:08d}"
    meta = json.loads((d / "meta.json").read_text())
    state = JoinState(
        pending=pq.read_table(d / "pending.parquet").cast(IMP_SCHEMA),
        views=pq.read_table(d / "views.parquet").cast(VIEW_SCHEMA),
        inter=pq.read_table(d / "inter.parquet").cast(INTER_SCHEMA),
        closed=pq.read_table(d / "closed.parquet").cast(CLOSED_SCHEMA),
        max_ts_ms=meta["max_ts_ms"],
        totals=StepCounts(**meta["totals"]),
    )
    return state, dict(meta["consumed"]), meta["config"]


def _prune_consumed(consumed: dict[str, int]) -> dict[str, int]:
    if not consumed:
        return consumed
    floor = max(consumed.values()) - CONSUMED_SLACK_MS
    return {b: ts for b, ts in consumed.items() if ts >= floor}


def _save_state(lake_root: Path, seq: int, state: JoinState, consumed: dict[str, int], config: dict,
                lake_versions: dict[str, int | None] | None = None) -> None:
    root = stream_root(lake_root)
    d = root / f"state-{seq:08d}"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    for name, table in (("pending", state.pending), ("views", state.views), ("inter", state.inter),
                        ("closed", state.closed)):
        pq.write_table(table, d / f"{name}.parquet", compression="zstd")
    (d / "meta.json").write_text(json.dumps({"seq": seq, "max_ts_ms": state.max_ts_ms, "consumed": consumed,
                                             "totals": asdict(state.totals), "config": config,
                                             "lake_versions": lake_versions or {}}))
    for f in d.iterdir():
        fsync_path(f)
    fsync_path(d)
    atomic_write_json(root / CURRENT, {"seq": seq})  # the commit


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


def run_stream_join(lake_root: str | os.PathLike, config: JoinerConfig, stream: StreamConfig | None = None,
                    *, max_batches: int | None = None, now_ms: int | None = None,
                    clock_skew_ms: int = MAX_CLOCK_SKEW_MS, _after_part=None) -> StreamReport:
    """Join the ingest batches committed since the last run as one micro-batch; commit its
    examples and the new state. Safe to run concurrently (a lock) and after a kill -9 (recovery)."""
    started = time.perf_counter()
    lake_root = Path(lake_root)
    stream = stream or StreamConfig()
    stream_root(lake_root).mkdir(parents=True, exist_ok=True)
    with exclusive_lock(stream_root(lake_root) / "_lock"):
        seq = committed_seq(lake_root)
        recovered = _recover(lake_root, seq)
        state, consumed, saved_config = _load_state(lake_root, seq)
        now_config = {"joiner": asdict(config), "stream": asdict(stream)}
        if saved_config and saved_config != now_config:
            raise ValueError(f"the streaming join's state was built with {saved_config}, not {now_config}: "
                             f"remove {stream_root(lake_root)} and {lake_root / EXAMPLES_DIR} to start over")
        lake = Lake(lake_root)
        log = lake.read_ingest_log()
        floor = max(consumed.values()) - CONSUMED_SLACK_MS if consumed else None
        order = sorted({(ts, b) for b, ts in zip(log.column("batch_id").to_pylist(),
                                                 log.column("ingested_at_ms").to_pylist())
                        if b not in consumed and (floor is None or ts >= floor)})[:max_batches]
        new = [b for _, b in order]
        if not new:
            return StreamReport(seq, 0, StepCounts(pending=state.pending.num_rows,
                                                   watermark_ms=StreamJoiner(config, stream, state).watermark_ms),
                                time.perf_counter() - started, recovered)
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
        nxt = seq + 1
        out = part_path(lake_root, nxt)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        # every impression this part holds is before closed_below_ms (the parts tile event time):
        # readers skip whole parts by it
        closed_below = None if counts.watermark_ms is None else counts.watermark_ms - config.label_window_s * 1000
        examples = examples.replace_schema_metadata({PART_KEY: json.dumps({"closed_below_ms": closed_below,
                                                                           "lake_versions": snap.versions})})
        pq.write_table(examples, tmp, compression="snappy")
        atomic_replace(tmp, out)
        if _after_part is not None:  # tests: a crash between the part and the commit
            _after_part()
        _save_state(lake_root, nxt, joiner.state, _prune_consumed({**consumed, **{b: ts for ts, b in order}}),
                    now_config, snap.versions)
        old = stream_root(lake_root) / f"state-{seq:08d}"
        if seq and old.exists():
            shutil.rmtree(old)
        if joiner.state.max_ts_ms is not None:
            # The serving stack's counters, from the day of events the state keeps (written after
            # the commit: a crash here leaves them one step behind, never ahead of the state)
            write_counters(lake_root, compute_counters(joiner.state.views, joiner.state.inter,
                                                       joiner.state.max_ts_ms), joiner.state.max_ts_ms)
        return StreamReport(nxt, len(new), counts, time.perf_counter() - started, recovered, dict(snap.versions))


def read_stream_examples(lake_root: str | os.PathLike, *, after_seq: int = 0,
                         through_seq: int | None = None) -> pa.Table | None:
    """The committed parts ``after_seq < seq <= through_seq`` (default: the committed seq), in
    emission order; None when there are none."""
    last = committed_seq(lake_root) if through_seq is None else min(through_seq, committed_seq(lake_root))
    files = [part_path(lake_root, s) for s in range(after_seq + 1, last + 1)]
    files = [f for f in files if f.exists()]
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f) for f in files])


def stream_examples_after(lake_root: str | os.PathLike, after_ms: int, *,
                          after_seq: int | None = None) -> pa.Table | None:
    """Committed examples with ``ts_ms > after_ms``, from the parts after ``after_seq``; without
    it (after a batch retrain), from the newest parts back to the first that closed nothing after
    ``after_ms`` (read from the parts' footers, not their rows)."""
    last = committed_seq(lake_root)
    if after_seq is None:
        after_seq = 0
        for s in range(last, 0, -1):
            p = part_path(lake_root, s)
            meta = (pq.read_schema(p).metadata or {}).get(PART_KEY) if p.exists() else None
            below = json.loads(meta)["closed_below_ms"] if meta else None
            if below is not None and below - 1 <= after_ms:
                after_seq = s
                break
    table = read_stream_examples(lake_root, after_seq=after_seq, through_seq=last)
    if table is None:
        return None
    return table.filter(pa.compute.greater(table.column("ts_ms"), after_ms))


def committed_watermark_ms(lake_root: str | os.PathLike) -> int | None:
    """The event-time watermark of the committed state (None before the first step)."""
    seq = committed_seq(lake_root)
    if seq == 0:
        return None
    meta = json.loads((stream_root(lake_root) / f"state-{seq:08d}" / "meta.json").read_text())
    if meta["max_ts_ms"] is None:
        return None
    return meta["max_ts_ms"] - meta["config"]["stream"]["allowed_lateness_s"] * 1000
