"""Landing files -> typed, validated, deduplicated Delta tables, with quarantine and an ingest log.

Guarantees (each tested):
- Accounting: for every landing file, lines read = rows in the lake + rows in quarantine + exact
  duplicates dropped. The batch refuses to commit if its own counts do not balance.
- Exactly once: a row is in the lake at most once per ``event_id`` among rows dated within
  ``max_lateness_days`` of each other, whatever their dates; a later copy with the same payload
  (every typed value, the timestamp included) is an exact duplicate (counted, dropped), one with
  another payload, such as a re-send re-stamped to another time or date, is quarantined as a
  conflicting duplicate.
- Idempotence: a file whose identity is in the ingest log is skipped; a batch's commits carry its
  transaction id (``ingest:<batch>``), so no table takes a batch twice.
- Crash safety: a batch records its plan in the lease (``_ingest_state``), commits one Delta
  transaction per table (the ingest log last) and sets the lease back to idle. A batch found in
  flight (its writer died) is finished from its plan before anything else happens; a file put in
  a table's folder whose commit never came is in no version, so no reader sees it.
- One bad file never blocks the others: a file the engine cannot take as it is (see
  ``FILE_REASONS``) is quarantined as a file, every line of it with the file's reason, and logged
  with that reason in ``file_reason``; the rest of the batch commits, and the file, being in the
  log, is never tried again. An empty file is an ordinary file with no rows.
- No flush time beyond the ingest's clock: a file's flush time (from its name, else its mtime)
  later than ``now_ms`` + ``future_skew_seconds`` quarantines the file (``future_flush_time``), and
  an event later than that is ``future_timestamp`` whatever its file's name says.

Delta tables under ``lake_root`` (a local directory or ``s3://bucket/prefix``)::

    events/<stream>/   partitioned by event_date; files part-<batch>-c<chunk>[-<token>].parquet
    quarantine/        files part-<batch>-<stream>-c<chunk>[-<token>].parquet
    ingest_log/        one row per ingested landing file
    _ingest_state/     the lease: the batch in flight, if any
    _staging/<batch>/  _ingest.lock     (local lakes: staged files, the writers' lock)
"""

from __future__ import annotations

import codecs
import dataclasses
import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
import time
import urllib.parse
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from tiktok_pipelines.ingest.landing import (
    LandingFile,
    list_landing_files,
    name_problem,
    safe_landing_path,
    shown_path,
)
from tiktok_pipelines.ingest.fastpath import FastTyper, split_typed, ts_bounds
from tiktok_pipelines.ingest.seen import SeenIds, hash_ids, id_arrays
from tiktok_pipelines.ingest.validate import payload_hash_sql, validation_sql
from tiktok_pipelines.lake import exclusive_lock, sql_path
# The lake's table names live in layout.py; re-exported here for the engine's many importers.
from tiktok_pipelines.layout import (  # noqa: F401  (re-exported)
    EVENTS_DIR,
    INGEST_LOG_DIR,
    QUARANTINE_DIR,
    STAGING_DIR,
    STATE_TABLE,
    events_table,
)
from tiktok_pipelines.schemas import BOOL, FLOAT64, INT64, JSON_OBJECT, STREAMS, STRING
from tiktok_pipelines.sqlfiles import load_sql
from tiktok_pipelines.tables import StagedFile, TableStore

_PKG = "tiktok_pipelines.ingest"  # its SQL: ingest/sql/*.sql
STATE_APP = "ingest-state"  # the app transaction id whose version is the state's generation
STATE_SCHEMA = pa.schema([("generation", pa.int64()), ("batch_id", pa.string()), ("plan", pa.string())])

# DuckDB writes Parquet row groups in parallel: 500k-row groups left one of the two cores idle
# and wrote at half the speed of this size, which is still big enough for fast scans.
ROW_GROUP_ROWS = 122_880
_EPOCH = dt.date(1970, 1, 1)
_LAKE, _DUPLICATE, _CONFLICT = 0, 1, 2  # a valid line's outcome (_judge_duplicates)

# Columns the lake adds to every event: where the row came from, for lineage and for audits.
LINEAGE_COLUMNS = ("_src_file", "_src_line", "_batch_id", "_payload_hash")

INGEST_LOG_SCHEMA = pa.schema(
    [
        ("batch_id", pa.string()),
        ("file_key", pa.string()),
        ("stream", pa.string()),
        ("rel_path", pa.string()),
        ("size_bytes", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("flushed_at_ms", pa.int64()),
        ("rows_read", pa.int64()),
        ("rows_lake", pa.int64()),
        ("rows_quarantine", pa.int64()),
        ("rows_duplicate", pa.int64()),
        ("ingested_at_ms", pa.int64()),
        # NULL: the file was validated line by line. Otherwise the reason the whole file was
        # quarantined (FILE_REASONS); its rows are all in quarantine with that reason. Added in
        # Dec 2026: logs written before read with NULL here (read_ingest_log, union_by_name).
        ("file_reason", pa.string()),
    ]
)

# Why a whole file is quarantined, as ``file_reason`` in the ingest log and ``reason`` of each of
# its lines in quarantine. Its lines are kept: the file may be fixed and re-delivered under a good
# name (a new identity, so a new ingest).
FILE_REASONS = {
    "future_flush_time": "flush time (name, else mtime) later than the ingest's clock + future_skew",
    "invalid_flush_time": "a landing name whose flush date is impossible (month 13, day 99)",
    "unsafe_name": "a name safe_landing_path refuses (a '..' or '.' component with '\\' as separator)",
    "undecodable_name": "a name that is not UTF-8; recorded with \\xNN escapes",
}

QUARANTINE_SCHEMA = pa.schema(
    [
        ("stream", pa.string()),
        ("src_file", pa.string()),
        ("src_line", pa.int64()),
        ("reason", pa.string()),
        ("event_id", pa.string()),
        ("raw_line", pa.string()),
        ("batch_id", pa.string()),
        ("ingested_at_ms", pa.int64()),
    ]
)


class BatchInFlightError(RuntimeError):
    """A batch left in flight cannot be finished (its files left the landing zone)."""


class AccountingError(RuntimeError):
    """A batch whose counts do not balance; it is never committed."""


@dataclass(frozen=True)
class IngestSettings:
    future_skew_seconds: int = 300  # collectors' clocks may run this far ahead of the flush time
    max_lateness_days: int = 30  # older events are quarantined as stale, not silently accepted
    chunk_bytes: int = 256 * 1024 * 1024  # landing bytes validated per DuckDB pass (bounds memory)
    duckdb_threads: int | None = None
    # snappy: partitioned COPY with zstd ran at under half the speed here, and every engine reads snappy.
    compression: str = "snappy"
    # How far a file's flush time may be ahead of the ingest's clock; None: future_skew_seconds.
    # Only a replay of a simulated world dated ahead of the wall clock (benchmarks/soak.py) needs
    # more; events stay bounded by their file's flush time + future_skew_seconds.
    max_flush_ahead_seconds: int | None = None
    # Type the common lines in the compiled single pass (ingest/fastpath.py) and send only the
    # rest through the SQL parse; off: every line through the SQL (same rows either way).
    compiled_typing: bool = True

    def flush_limit_ms(self, now_ms: int) -> int:
        """The latest flush time (and event time) an ingest at ``now_ms`` accepts."""
        ahead = self.future_skew_seconds if self.max_flush_ahead_seconds is None else self.max_flush_ahead_seconds
        return now_ms + ahead * 1000


@dataclass
class FileCounts:
    file: LandingFile
    rows_read: int = 0
    rows_lake: int = 0
    rows_quarantine: int = 0
    rows_duplicate: int = 0
    file_reason: str | None = None  # set: the whole file was quarantined (FILE_REASONS)

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.rows_lake + self.rows_quarantine + self.rows_duplicate


@dataclass
class IngestReport:
    batch_id: str | None
    files: list[FileCounts] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)
    reasons: Counter = field(default_factory=Counter)
    dates_by_stream: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    resumed_batches: list[str] = field(default_factory=list)  # batches in flight, finished first
    seconds: float = 0.0
    # Chunks whose speculative validation met a malformed line shaped like an object and were
    # validated again line by line (_validate): a number that grows means slower ingests.
    checked_chunks: int = 0
    # Lines the compiled path typed (ingest/fastpath.py); the rest of rows_read went through the
    # SQL parse. A share that falls means a producer writes lines it defers (escapes, non-ASCII
    # text, blanks inside objects, other keys): correct, only slower.
    compiled_lines: int = 0

    def totals(self, stream: str | None = None) -> dict[str, int]:
        rows = [f for f in self.files if stream is None or f.file.stream == stream]
        return {
            "files": len(rows),
            "rows_read": sum(f.rows_read for f in rows),
            "rows_lake": sum(f.rows_lake for f in rows),
            "rows_quarantine": sum(f.rows_quarantine for f in rows),
            "rows_duplicate": sum(f.rows_duplicate for f in rows),
        }

    def quarantined_files(self) -> list[tuple[FileCounts, str]]:
        """The files quarantined whole, with the reason."""
        return [(f, f.file_reason) for f in self.files if f.file_reason]


# --------------------------------------------------------------------------------------- reading


def _split_lines(buf: pa.Buffer) -> tuple[pa.Array, np.ndarray]:
    """Split a file's bytes on '\\n' without copying: (lines as a LargeString array, 1-based line
    numbers). Empty lines are not records and are dropped here."""
    if buf.size == 0:  # an empty file: no records (from_buffers refuses a null data buffer)
        return pa.array([], pa.large_string()), np.zeros(0, dtype=np.int64)
    a = np.frombuffer(buf, dtype=np.uint8)
    newlines = np.flatnonzero(a == 10)
    starts = np.concatenate(([0], newlines + 1)).astype(np.int64)
    ends = np.concatenate((newlines, [len(a)])).astype(np.int64)
    offsets = np.append(starts, len(a)).astype(np.int64)
    lines = pa.LargeStringArray.from_buffers(len(starts), pa.py_buffer(offsets), buf)
    line_no = np.arange(1, len(starts) + 1, dtype=np.int64)
    keep = ends > starts
    if not keep[:-1].all():
        lines = lines.filter(pa.array(keep))
        line_no = line_no[keep]
    elif not keep[-1]:
        # The common case, a file ending in a newline: slicing is free, filtering copies.
        lines = lines.slice(0, len(lines) - 1)
        line_no = line_no[:-1]
    return lines, line_no


def _map_file(path: Path) -> pa.Buffer:
    """A file's bytes, memory-mapped. Arrow takes only UTF-8 paths: the rare name that is not
    (quarantined as ``undecodable_name``) is read through Python instead."""
    if shown_path(str(path)) != str(path):
        return pa.py_buffer(path.read_bytes())
    return pa.memory_map(str(path)).read_buffer()


def _utf8_bad_mask(lines: pa.Array) -> np.ndarray | None:
    """None when every line is valid UTF-8 (checked in bulk); else a mask of the bad ones.

    The bad lines are found without a Python call per line: decode the bytes in C from the start;
    each UnicodeDecodeError names the offset of the first bad byte, which marks its line, and the
    decode resumes at the next line. A file with k bad lines costs k + 1 decodes.
    """
    try:
        lines.validate(full=True)
        return None
    except pa.ArrowInvalid:
        pass
    _, offsets_buf, data_buf = lines.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[lines.offset : lines.offset + len(lines) + 1]
    data = memoryview(data_buf)
    bad = np.zeros(len(lines), dtype=bool)
    i = 0  # the first line not yet known to be valid
    while i < len(lines):
        start = int(offsets[i])
        try:
            codecs.utf_8_decode(data[start : int(offsets[-1])], "strict", True)
            break
        except UnicodeDecodeError as e:
            # Lines may not be contiguous (blank lines were filtered out), so locate by offset.
            j = int(np.searchsorted(offsets, start + e.start, side="right")) - 1
            bad[j] = True
            i = j + 1
    return bad


# -------------------------------------------------------------------------------------- the lake


class Lake:
    """The lake's Delta tables (``tables.TableStore``: a local directory or ``s3://bucket/prefix``).

    Tables: ``events/<stream>`` (partitioned by ``event_date``), ``quarantine``, ``ingest_log``
    (one row per ingested landing file: the files a batch committed) and ``_ingest_state`` (the
    batch in flight, if any: see ``ingest_files``).
    """

    def __init__(self, root: Path | str, store: TableStore | None = None):
        self.store = store or TableStore.from_config(root)
        # A local directory for the lock and the staging area; None for a lake on object storage.
        self.root: Path | None = Path(self.store.root) if self.store.is_local else None

    def events_dir(self, stream: str) -> Path:
        """A local events table's folder (for links in metadata; readers use the Delta table)."""
        assert self.root is not None, "an object-storage lake has no local folder"
        return self.root / EVENTS_DIR / stream

    def events_dataset(self, stream: str, version: int | None = None) -> pads.Dataset | None:
        return self.store.dataset(events_table(stream), version)

    def read_ingest_log(self) -> pa.Table:
        """Every commit record, in INGEST_LOG_SCHEMA."""
        ds = self.store.dataset(INGEST_LOG_DIR)
        if ds is None:
            return INGEST_LOG_SCHEMA.empty_table()
        return ds.to_table().select(INGEST_LOG_SCHEMA.names).cast(INGEST_LOG_SCHEMA)

    def ingested_keys(self) -> set[str]:
        ds = self.store.dataset(INGEST_LOG_DIR)
        return set() if ds is None else set(ds.to_table(columns=["file_key"]).column("file_key").to_pylist())

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """On local disk, writers on this machine take turns (cheaper than losing the lease race);
        on object storage the lease in ``_ingest_state`` alone keeps batches one at a time."""
        if self.root is None:
            yield
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.root / "_ingest.lock"):
            yield

    def state(self) -> tuple[int, dict | None]:
        """(generation, plan of the batch in flight or None). The generation is the app
        transaction version of ``_ingest_state``'s last commit: every change of state commits the
        next one, so of two writers changing it from the same generation only one lands."""
        t = self.store.table(STATE_TABLE)
        gen = (t.transaction_version(STATE_APP) or 0) if t is not None else 0
        if gen == 0:
            return 0, None
        rows = self.store.arrow_dataset(t, STATE_TABLE).to_table().to_pylist()
        row = next(r for r in rows if r["generation"] == gen)  # an overwrite leaves only this row
        return gen, (json.loads(row["plan"]) if row["plan"] else None)

    def set_state(self, gen: int, plan: dict | None) -> bool:
        """Move the state from generation ``gen`` to ``plan`` (None: idle). False: another writer
        changed it first (read it again)."""
        row = pa.table({"generation": [gen + 1], "batch_id": [plan["batch_id"] if plan else None],
                        "plan": [json.dumps(plan) if plan else None]}, schema=STATE_SCHEMA)
        return self.store.swap(STATE_TABLE, row, app=STATE_APP, expected=gen)


def lake_tables() -> list[str]:
    """Every table the ingest writes (the care assets keep them all)."""
    return [events_table(s) for s in STREAMS] + [QUARANTINE_DIR, INGEST_LOG_DIR, STATE_TABLE]


_ARROW_TYPES = {STRING: pa.string(), INT64: pa.int64(), FLOAT64: pa.float64(), BOOL: pa.bool_(),
                JSON_OBJECT: pa.string()}


def events_schema(stream: str) -> pa.Schema:
    """An events table's schema: the stream's fields, the lineage columns, the partition column."""
    return pa.schema(
        [(f.name, _ARROW_TYPES[f.type]) for f in STREAMS[stream].fields]
        + [("_src_file", pa.string()), ("_src_line", pa.int64()), ("_batch_id", pa.string()),
           ("_payload_hash", pa.int64()), ("event_date", pa.date32())]
    )


# ----------------------------------------------------------------------------------- the engine


def batch_id_for(files: Iterable[LandingFile]) -> str:
    h = hashlib.sha1()
    for key in sorted(f.key for f in files):
        h.update(key.encode())
    return h.hexdigest()[:16]


def _chunks(files: list[LandingFile], chunk_bytes: int) -> list[list[LandingFile]]:
    out: list[list[LandingFile]] = []
    cur: list[LandingFile] = []
    size = 0
    for f in files:
        if cur and size + f.size > chunk_bytes:
            out.append(cur)
            cur, size = [], 0
        cur.append(f)
        size += f.size
    if cur:
        out.append(cur)
    return out


def ingest_files(
    files: list[LandingFile],
    *,
    landing_root: Path | str,
    lake_root: Path | str,
    settings: IngestSettings | None = None,
    now_ms: int | None = None,
    store: TableStore | None = None,
) -> IngestReport:
    """Ingest ``files`` into the lake as one batch (files already ingested are skipped).

    One batch at a time, through a lease in ``_ingest_state``: a writer first records its plan
    (the files, the clock it judges them by, its settings) as the batch in flight, then commits
    the batch (one Delta transaction per table, each with the batch's transaction id), then sets
    the state back to idle. A writer that finds a batch in flight finishes it first, from its plan:
    the same files judged the same way produce the same rows, and a table that already holds the
    batch's transaction is skipped, so a batch whose writer died (or is merely slow) lands exactly
    once, and a half-committed batch never stays half-committed.
    """
    settings = settings or IngestSettings()
    lake = Lake(lake_root, store)
    landing_root = Path(landing_root)
    started = time.perf_counter()
    resumed: list[str] = []
    with lake.writer_lock():
        while True:
            gen, plan = lake.state()
            if plan is not None:
                try:
                    _run_plan(plan, IngestReport(batch_id=plan["batch_id"]), lake, landing_root)
                except FileNotFoundError as e:
                    raise BatchInFlightError(
                        f"batch {plan['batch_id']} was left in flight by a writer that stopped, and one of "
                        f"its landing files is gone ({e.filename}); a batch in flight is finished from its "
                        f"files before any other commits: put the file back (same name, size and mtime) "
                        f"and run the ingest again") from e
                resumed.append(plan["batch_id"])
                lake.set_state(gen, None)  # False: its writer (or another) got there first
                continue
            done = lake.ingested_keys()
            todo = [f for f in sorted(set(files)) if f.key not in done]
            report = IngestReport(batch_id=batch_id_for(todo) if todo else None, resumed_batches=resumed)
            report.skipped_files = sorted(f.rel_path for f in files if f.key in done)
            if not todo:
                break
            plan = {
                "batch_id": report.batch_id,
                "now_ms": now_ms or int(time.time() * 1000),
                "settings": dataclasses.asdict(settings),
                "files": [dataclasses.asdict(f) for f in todo],
            }
            if not lake.set_state(gen, plan):
                continue  # another writer planned a batch first: finish it, then look again
            _run_plan(plan, report, lake, landing_root)
            lake.set_state(gen + 1, None)
            break
    report.seconds = time.perf_counter() - started
    return report


def _run_plan(plan: dict, report: IngestReport, lake: Lake, landing_root: Path) -> None:
    todo = [LandingFile(**f) for f in plan["files"]]
    settings = IngestSettings(**plan["settings"])
    if lake.root is not None:
        staging = lake.root / STAGING_DIR / plan["batch_id"]
        shutil.rmtree(staging, ignore_errors=True)  # a dead writer's files: its plan is redone
        staging.mkdir(parents=True)
    else:
        staging = Path(tempfile.mkdtemp(prefix=f"ingest-{plan['batch_id']}-"))
    try:
        _run_batch(todo, report, lake, landing_root, settings, plan["now_ms"], staging)
    finally:
        # Free the staged bytes now (on a full disk they would keep it full until the next run).
        shutil.rmtree(staging, ignore_errors=True)


def _run_batch(
    todo: list[LandingFile],
    report: IngestReport,
    lake: Lake,
    landing_root: Path,
    settings: IngestSettings,
    now_ms: int,
    staging: Path,
) -> None:
    batch_id = report.batch_id
    assert batch_id is not None

    con = duckdb.connect()
    cons = [con, con.cursor()]  # a second connection to the same database (see the chunk loop)
    for c in cons:
        c.execute("SET preserve_insertion_order = false")
        if settings.duckdb_threads:
            c.execute(f"SET threads = {int(settings.duckdb_threads)}")
    moves: list[tuple[str, StagedFile]] = []  # (table, file) to commit
    counts: dict[str, FileCounts] = {f.key: FileCounts(f) for f in todo}
    limit_ms = settings.flush_limit_ms(now_ms)
    for f in todo:
        reason = name_problem(landing_root, f.rel_path)
        if reason is None and f.flushed_at_ms > limit_ms:
            reason = "future_flush_time"
        counts[f.key].file_reason = reason

    by_stream: dict[str, list[LandingFile]] = defaultdict(list)
    for f in todo:
        by_stream[f.stream].append(f)
    jobs: list[tuple[str, int, list[LandingFile]]] = []  # (stream, chunk_no, chunk)
    for stream, stream_files in sorted(by_stream.items()):
        chunks = _chunks(stream_files, settings.chunk_bytes)
        jobs += [(stream, no, chunk) for no, chunk in enumerate(chunks)]

    def read(job: tuple[str, int, list[LandingFile], bool]) -> _ChunkLines:
        return _read_chunk(job[2], landing_root, [counts[f.key].file_reason for f in job[2]], settings, now_ms)

    # Three things overlap, since DuckDB leaves a core idle part of the time (Parquet writing
    # especially): the next chunk's files are mapped and split into lines in a thread (single-
    # threaded numpy, most of it without the GIL); and a chunk's staging (its Parquet files) runs in
    # another thread on its own connection while the next chunk is validated and judged on the
    # other one. Chunks alternate between the two connections; each chunk's temp tables and
    # registered relations live on its connection, the batch's ``seen`` in the shared database.
    # Judging stays in order (each chunk's judging needs the ids of the chunks before it). At most
    # three chunks are in memory: one read ahead, one judged, one staged (IngestSettings.chunk_bytes).
    staging_on: list[Future | None] = [None, None]  # the staging each connection is busy with
    batch = _Batch(con, batch_id, counts, report, lake, landing_root, staging, settings, now_ms, moves)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-read") as pool, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-stage") as stager:
        ahead = pool.submit(read, jobs[0]) if jobs else None
        for k, job in enumerate(jobs):
            stream, chunk_no, chunk = job
            slot = k % 2
            if staging_on[slot] is not None:
                staging_on[slot].result()  # its connection is free again (and a failure raised)
            lines = ahead.result()
            ahead = pool.submit(read, jobs[k + 1]) if k + 1 < len(jobs) else None
            if chunk_no == 0:
                # The ids this batch has put in the lake so far (the lake's own are probed per
                # chunk), per stream; judging is in chunk order, on this thread.
                batch.seen.reset()
            staging_on[slot] = _ingest_chunk(dataclasses.replace(batch, con=cons[slot]), stream, chunk, chunk_no,
                                             lines=lines, stager=stager)
        for done in staging_on:
            if done is not None:
                done.result()
    for c in reversed(cons):
        c.close()

    for c in counts.values():
        if not c.balanced:
            raise AccountingError(
                f"{c.file.rel_path}: read {c.rows_read} != lake {c.rows_lake} + quarantine "
                f"{c.rows_quarantine} + duplicates {c.rows_duplicate}; batch {batch_id} not committed"
            )

    _commit_batch(lake, batch_id, counts, moves, now_ms, limit_ms)
    report.files = list(counts.values())


def _commit_batch(lake: Lake, batch_id: str, counts: dict[str, FileCounts], moves: list[tuple[str, StagedFile]],
                  now_ms: int, limit_ms: int) -> None:
    """Commit a judged batch: its staged files table by table, then its ingest log rows."""
    log = pa.table(
        {
            "batch_id": [batch_id] * len(counts),
            "file_key": [c.file.key for c in counts.values()],
            "stream": [c.file.stream for c in counts.values()],
            "rel_path": [c.file.shown_path for c in counts.values()],
            "size_bytes": [c.file.size for c in counts.values()],
            "mtime_ns": [c.file.mtime_ns for c in counts.values()],
            # Never a flush time past the ingest's clock: readers take the newest one as the
            # stream's watermark (training/online.py), and a 2099 name would move it to 2099.
            "flushed_at_ms": [c.file.flushed_at_ms if c.file.flushed_at_ms <= limit_ms else None
                              for c in counts.values()],
            "rows_read": [c.rows_read for c in counts.values()],
            "rows_lake": [c.rows_lake for c in counts.values()],
            "rows_quarantine": [c.rows_quarantine for c in counts.values()],
            "rows_duplicate": [c.rows_duplicate for c in counts.values()],
            "ingested_at_ms": [now_ms] * len(counts),
            "file_reason": [c.file_reason for c in counts.values()],
        },
        schema=INGEST_LOG_SCHEMA,
    )
    # Commit: the batch's rows in each table it touches, one Delta transaction per table, each
    # with the batch's transaction id (a table that already has it, from an earlier try of this
    # plan, is skipped); the ingest log last, so a file counts as ingested only once all its rows
    # are committed. Until then the plan stays in flight and the next writer finishes it.
    txn = f"ingest:{batch_id}"
    by_table: dict[str, list[StagedFile]] = defaultdict(list)
    for table, staged in moves:
        by_table[table].append(staged)
    for table, staged in sorted(by_table.items()):
        if table == QUARANTINE_DIR:
            lake.store.commit_files(table, staged, schema=QUARANTINE_SCHEMA, txn=txn)
        else:
            lake.store.commit_files(table, staged, schema=events_schema(table.split("/", 1)[1]),
                                    partition_by=["event_date"], txn=txn)
    lake.store.commit(INGEST_LOG_DIR, log, txn=txn)


@dataclass
class _ChunkLines:
    """A chunk's landing files as lines, ready for DuckDB (``_read_chunk``)."""

    table: pa.Table  # (src_file_idx, src_line, line): every non-empty line but bad_utf8_rows
    rows_read: list[int]  # per file of the chunk: its non-empty lines
    bad_utf8_rows: list[dict]  # lines not UTF-8 found up front (files quarantined whole)
    unchecked: dict[int, tuple[pa.Array, np.ndarray]]  # files whose UTF-8 is checked after the parse
    # The compiled path's share (``typed_lines``: the lines it typed, as typed columns) and the
    # lines left for the SQL parse (``deferred``, shaped as ``table``): ``_read_chunk``.
    typed: pa.Table | None = None
    deferred: pa.Table | None = None


@cache
def _typer(stream: str) -> FastTyper:
    return FastTyper(STREAMS[stream])


def _ts_bounds(f: LandingFile, reason: str | None, settings: IngestSettings, now_ms: int) -> tuple[int, int] | None:
    """The event times a line of ``f`` may carry and be valid; None for a file quarantined whole
    (its lines all take the file's reason)."""
    if reason is not None:
        return None
    return ts_bounds(f.flushed_at_ms, future_skew_ms=settings.future_skew_seconds * 1000,
                     max_lateness_ms=settings.max_lateness_days * 86_400_000, max_ts_ms=settings.flush_limit_ms(now_ms))


def _read_chunk(chunk: list[LandingFile], landing_root: Path, file_reasons: list[str | None],
                settings: IngestSettings | None = None, now_ms: int = 0) -> _ChunkLines:
    """Map a chunk's files and split them into lines, and type what the compiled path can when
    ``settings`` say so (no DuckDB: safe in a thread; numba releases the GIL)."""
    line_arrays: list[pa.Array] = []
    line_nos: list[np.ndarray] = []
    file_idx: list[np.ndarray] = []
    bad_utf8_rows: list[dict] = []
    rows_read: list[int] = []
    unchecked: dict[int, tuple[pa.Array, np.ndarray]] = {}  # files whose UTF-8 is checked after the parse
    for idx, f in enumerate(chunk):
        # The POSIX rule: a name the strict rule refuses is inside the zone all the same (the
        # listing found it without following a symlink), and its lines go to quarantine.
        path = safe_landing_path(landing_root, f.rel_path, posix=True)
        # Memory-mapped, not read: no copy, and the page cache serves it. Landing files are
        # immutable once renamed into place (the collector contract), so the mapping is stable.
        buf = _map_file(path)
        lines, nos = _split_lines(buf)
        rows_read.append(len(lines))
        if file_reasons[idx] is None:
            # Checked after the parse, and only the lines it refuses (_not_utf8_lines): a line
            # that is not UTF-8 is never valid JSON, since the parser checks every byte. A full
            # check here cost ~5% of the ingest. A file quarantined whole is checked up front:
            # every line of it goes to quarantine, valid JSON or not.
            unchecked[idx] = (lines, nos)
            bad = None
        else:
            bad = _utf8_bad_mask(lines)
        if bad is not None and bad.any():
            # The few bad lines go to Python; the rest stay zero-copy slices between them
            # (an Arrow filter would copy the whole file for one bad line).
            bad_at = np.flatnonzero(bad)
            data = memoryview(lines.buffers()[2])
            offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset:]
            for i in bad_at.tolist():
                raw = bytes(data[int(offsets[i]) : int(offsets[i + 1])])
                bad_utf8_rows.append({"src_file_idx": idx, "src_line": int(nos[i]), "raw": raw})
            bounds = np.concatenate(([-1], bad_at, [len(lines)]))
            pieces = [(int(a) + 1, int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a + 1]
            line_arrays.extend(lines.slice(a, b - a) for a, b in pieces)
            nos = np.concatenate([nos[a:b] for a, b in pieces]) if pieces else nos[:0]
        else:
            line_arrays.append(lines)
        line_nos.append(nos)
        file_idx.append(np.full(len(nos), idx, dtype=np.int32))

    lines_tbl = pa.table(
        {
            "src_file_idx": pa.array(np.concatenate(file_idx) if file_idx else np.array([], np.int32)),
            "src_line": pa.array(np.concatenate(line_nos) if line_nos else np.array([], np.int64)),
            "line": pa.chunked_array(line_arrays, type=pa.large_string()),
        }
    )
    out = _ChunkLines(lines_tbl, rows_read, bad_utf8_rows, unchecked)
    # Without the compiled path, it types nothing and the SQL parses every line.
    compiled = settings is not None and settings.compiled_typing
    bounds = [_ts_bounds(f, r, settings, now_ms) if compiled else None for f, r in zip(chunk, file_reasons)]
    # Files typed in parallel (the kernel releases the GIL), as many at once as DuckDB has threads:
    # on one thread it would set the pace of the whole batch.
    threads = (settings.duckdb_threads or os.cpu_count() or 1) if compiled else 1
    out.typed, out.deferred = split_typed(_typer(chunk[0].stream), lines_tbl, bounds, threads=threads)
    return out


@dataclass
class _Batch:
    """What every chunk of one batch shares: the DuckDB connection, the per-file counts, the
    report, where files come from and are staged, the settings, the batch's clock, the files
    staged so far (table, file) for the commit and the ids it has met (``seen``, per stream)."""

    con: duckdb.DuckDBPyConnection
    batch_id: str
    counts: dict[str, FileCounts]
    report: IngestReport
    lake: Lake
    landing_root: Path
    staging: Path
    settings: IngestSettings
    now_ms: int
    moves: list[tuple[str, StagedFile]]
    seen: SeenIds = field(default_factory=SeenIds)


def _ingest_chunk(b: _Batch, stream: str, chunk: list[LandingFile], chunk_no: int, *,
                  lines: _ChunkLines | None = None, stager: ThreadPoolExecutor | None = None) -> Future | None:
    """Validate, judge and stage one chunk of a stream's files, in five steps: register its lines,
    validate them (temp table ``v``), judge duplicates (view ``c``: each line's outcome), count per
    file, stage the lake's Parquet files and the quarantine's. ``lines``: the chunk already read
    (``_read_chunk``), else it is read here. ``stager``: the staging step runs there (returned as
    its future, ``b.con`` busy until it is done) while the caller goes on to the next chunk on
    another connection; else it runs here."""
    file_reasons = [b.counts[f.key].file_reason for f in chunk]
    if lines is None:
        lines = _read_chunk(chunk, b.landing_root, file_reasons, b.settings, b.now_ms)
    for f, n in zip(chunk, lines.rows_read):
        b.counts[f.key].rows_read = n
    _register_chunk(b.con, chunk, lines)
    typed = _validate(b.con, STREAMS[stream], b.settings, b.now_ms, b.report, lines.typed)
    b.report.compiled_lines += typed.num_rows
    bad_utf8_rows = lines.bad_utf8_rows + _set_aside_file_reasons_and_bad_utf8(b.con, file_reasons, lines.unchecked)
    typed_codes = _judge_duplicates(b, stream, typed)
    # The typed lines (all valid) counted and dated in numpy, by their outcome codes.
    typed_files = typed.column("src_file_idx").to_numpy()
    lake_n, dup_n, conflict_n = (np.bincount(typed_files[typed_codes == code], minlength=len(chunk)).tolist()
                                 for code in (_LAKE, _DUPLICATE, _CONFLICT))
    for idx, f in enumerate(chunk):
        fc = b.counts[f.key]
        fc.rows_lake += lake_n[idx]
        fc.rows_duplicate += dup_n[idx]
        fc.rows_quarantine += conflict_n[idx]
    typed_days = pc.cast(typed.column("event_date"), pa.int32()).to_numpy()[typed_codes == _LAKE]
    days_set = {(_EPOCH + dt.timedelta(days=int(d))).isoformat() for d in np.unique(typed_days).tolist()}
    # The SQL's lines (few): per-file counts and the lake's dates in one pass over them.
    # The dates are grouped as DATE and named in Python: strftime per row was ~3% of the ingest.
    outcome_counts = b.con.execute(
        "SELECT src_file_idx, outcome, CASE WHEN outcome = 'lake' THEN event_date END, count(*) FROM c GROUP BY ALL"
    ).fetchall()
    days = sorted(days_set | {day.isoformat() for _, o, day, _ in outcome_counts if o == "lake"})
    for idx, outcome, _, n in outcome_counts:
        fc = b.counts[chunk[idx].key]
        if outcome == "lake":
            fc.rows_lake += n
        elif outcome == "quarantine":
            fc.rows_quarantine += n
        else:
            fc.rows_duplicate += n
    for r in bad_utf8_rows:
        b.counts[chunk[r["src_file_idx"]].key].rows_quarantine += 1

    def stage() -> None:
        _stage_events(b, stream, chunk, chunk_no, days)
        _stage_quarantine(b, stream, chunk, chunk_no, bad_utf8_rows, file_reasons, lines.table)
        b.con.execute("DROP VIEW c")
        b.con.execute("DROP TABLE v")
        b.con.execute("DROP TABLE v_rows")
        b.con.execute("DROP TABLE lake_hits")
        b.con.execute("DROP TABLE judged")
        b.con.unregister("files")
        b.con.unregister("lines")
        b.con.unregister("typed_lines")

    if stager is None:
        stage()
        return None
    return stager.submit(stage)


def _register_chunk(con: duckdb.DuckDBPyConnection, chunk: list[LandingFile], lines: _ChunkLines) -> None:
    """The chunk as the relations the SQL reads: ``lines`` (the lines the SQL parses: those the
    compiled path did not type) and ``files`` (index, path, flush time)."""
    con.register("lines", lines.deferred)
    con.register("files", pa.table({
        "src_file_idx": pa.array(range(len(chunk)), pa.int32()),
        "rel_path": [f.shown_path for f in chunk],
        "flushed_at_ms": [f.flushed_at_ms for f in chunk],
    }))


def _set_aside_file_reasons_and_bad_utf8(con: duckdb.DuckDBPyConnection, file_reasons: list[str | None],
                                        unchecked: dict[int, tuple[pa.Array, np.ndarray]]) -> list[dict]:
    """Give every line of a file quarantined whole its file's reason, and take the lines that are
    not UTF-8 out of ``v``; returns those lines (they go to quarantine through Python, readable
    with \\xNN escapes)."""
    for idx, reason in enumerate(file_reasons):
        if reason:  # rare: every line of the file takes the file's reason, whatever it was
            con.execute("UPDATE v SET reason = ? WHERE src_file_idx = ?", [reason, idx])
    not_utf8 = _not_utf8_lines(con, unchecked)
    if not_utf8:
        con.register("not_utf8", pa.table({"src_file_idx": pa.array([r["src_file_idx"] for r in not_utf8], pa.int32()),
                                           "src_line": pa.array([r["src_line"] for r in not_utf8], pa.int64())}))
        con.execute("DELETE FROM v WHERE (src_file_idx, src_line) IN (SELECT src_file_idx, src_line FROM not_utf8)")
        con.unregister("not_utf8")
    return not_utf8


def _judge_duplicates(b: _Batch, stream: str, typed: pa.Table) -> np.ndarray:
    """Each valid line of the chunk (``typed`` and the SQL's valid lines in ``v``) against the lake
    and the batch so far: temp tables ``lake_hits`` and ``judged`` (the outcome of each duplicate
    candidate), the view ``c`` (each of the SQL's lines with its outcome and final reason); returns
    the typed lines' outcomes (``_LAKE``, ``_DUPLICATE``, ``_CONFLICT``).

    Nearly every id is new. The candidates — an id met more than once in the chunk or met by an
    earlier chunk of the batch (``b.seen``, one compiled pass: seen.py), or one the lake holds —
    are ranked in SQL, and only they: their first copy goes to the lake, a later copy with the
    same payload hash is a duplicate, one with another hash a conflict; a copy already in the
    lake or put there by an earlier chunk decides for all of them.

    The lake's copies of the chunk's ids come from every partition within the allowed lateness
    of the chunk's dates, so a re-send re-stamped to another date is recognised too: one scan of
    the event_id and hash columns per chunk, and nothing when the window holds no partition (a
    first load, a backfill into an empty lake)."""
    con = b.con
    sql_valid = con.sql("SELECT src_file_idx, src_line, event_id, payload_hash, event_date FROM v "
                        "WHERE reason IS NULL").to_arrow_table()
    n_typed = typed.num_rows
    # Every valid line, the typed first: position i < n_typed is typed line i.
    ids, offsets, data = id_arrays([*typed.column("event_id").chunks, *sql_valid.column("event_id").chunks])
    span = pc.min_max(pa.chunked_array([*typed.column("event_date").chunks, *sql_valid.column("event_date").chunks],
                                       pa.date32())).as_py()
    con.execute("DROP TABLE IF EXISTS lake_hits")
    source = (_events_source(con, b.lake, stream, _window_days(span["min"], span["max"], b.settings.max_lateness_days))
              if span["min"] else None)
    if source:
        con.register("chunk_ids", pa.table({"event_id": ids}))
        con.execute(load_sql(_PKG, "chunk_lake_hits", source=source, batch_id=b.batch_id))
        con.unregister("chunk_ids")
    else:
        con.execute("CREATE TEMP TABLE lake_hits (event_id VARCHAR, payload_hash BIGINT)")

    def both(name: str) -> np.ndarray:
        return np.concatenate([typed.column(name).to_numpy(), sql_valid.column(name).to_numpy()])

    payload = both("payload_hash")
    hashes = hash_ids(offsets, data)
    entries, candidate, start = b.seen.meet(offsets, data, hashes, payload)
    lake_ids = con.sql("SELECT event_id FROM lake_hits").to_arrow_table().column(0)
    if len(lake_ids):
        candidate |= np.isin(hashes, hash_ids(*id_arrays(lake_ids.chunks)[1:]))
    pos = np.flatnonzero(candidate)
    con.register("cand", pa.table({
        "pos": pos, "src_file_idx": both("src_file_idx")[pos], "src_line": both("src_line")[pos],
        "event_id": ids.take(pos), "payload_hash": payload[pos], "typed": pos < n_typed,
    }))
    # The earlier chunks' lake copies of the candidates' ids.
    earlier = pos[entries[pos] < start]
    seen_entries, first = np.unique(entries[earlier], return_index=True)
    con.register("seen_c", pa.table({"event_id": ids.take(earlier[first]),
                                     "payload_hash": b.seen.payload_hashes(seen_entries)}))
    con.execute("DROP TABLE IF EXISTS judged")
    con.execute(load_sql(_PKG, "chunk_judged"))
    con.unregister("cand")
    con.unregister("seen_c")
    con.execute(load_sql(_PKG, "chunk_outcomes"))

    codes = np.full(len(hashes), _LAKE, np.int8)
    judged = con.sql("SELECT pos, outcome = 'duplicate' FROM judged WHERE outcome <> 'lake'").to_arrow_table()
    codes[judged.column(0).to_numpy()] = np.where(judged.column(1).to_numpy(zero_copy_only=False), _DUPLICATE, _CONFLICT)
    b.seen.settle(entries[pos], payload[pos], codes[pos] == _LAKE, start)
    return codes[:n_typed]


def _stage_events(b: _Batch, stream: str, chunk: list[LandingFile], chunk_no: int, days: list[str]) -> None:
    """The chunk's lake rows as staged Parquet files, one per date, for the commit.

    One plain COPY per date instead of PARTITION_BY: DuckDB's partitioned writer ran at half the
    speed here, and a chunk rarely spans more than a few dates (late events)."""
    schema = STREAMS[stream]
    columns = ", ".join(f"r.{n}" for n in schema.field_names)
    typed_columns = ", ".join(f"t.{n}" for n in schema.field_names)
    src_paths = "[" + ", ".join(sql_path(f.shown_path) for f in chunk) + "]"
    for day in days:
        name = f"part-{b.batch_id}-c{chunk_no}.parquet"
        src = b.staging / EVENTS_DIR / stream / f"event_date={day}" / name
        src.parent.mkdir(parents=True, exist_ok=True)
        written = b.con.execute(load_sql(
            _PKG, "chunk_stage_events", columns=columns, typed_columns=typed_columns, src_paths=src_paths,
            batch_id=b.batch_id, day=day,
            path=sql_path(src), compression=b.settings.compression, row_group_rows=ROW_GROUP_ROWS,
        )).fetchall()[0][0]
        b.moves.append((events_table(stream), StagedFile(src, name, int(written), {"event_date": day})))
        b.report.dates_by_stream[stream].add(day)


def _stage_quarantine(b: _Batch, stream: str, chunk: list[LandingFile], chunk_no: int,
                      bad_utf8_rows: list[dict], file_reasons: list[str | None], lines: pa.Table) -> None:
    """The chunk's quarantined lines (SQL's and the not-UTF-8 ones) as one staged Parquet file."""
    quarantine_tbl = b.con.sql(load_sql(_PKG, "chunk_quarantine", stream=stream, batch_id=b.batch_id,
                                        now_ms=int(b.now_ms))).to_arrow_table()
    quarantine_tbl = _with_raw_lines(quarantine_tbl, lines)
    if bad_utf8_rows:
        quarantine_tbl = pa.concat_tables([
            quarantine_tbl.cast(QUARANTINE_SCHEMA),
            pa.table({
                "stream": [stream] * len(bad_utf8_rows),
                "src_file": [chunk[r["src_file_idx"]].shown_path for r in bad_utf8_rows],
                "src_line": [r["src_line"] for r in bad_utf8_rows],
                "reason": [file_reasons[r["src_file_idx"]] or "malformed_json:invalid_utf8" for r in bad_utf8_rows],
                "event_id": [None] * len(bad_utf8_rows),
                # Kept readable; the exact bytes stay in the landing file at src_file:src_line.
                "raw_line": [r["raw"].rstrip(b"\n").decode("utf-8", "backslashreplace") for r in bad_utf8_rows],
                "batch_id": [b.batch_id] * len(bad_utf8_rows),
                "ingested_at_ms": [b.now_ms] * len(bad_utf8_rows),
            }, schema=QUARANTINE_SCHEMA),
        ])
    if quarantine_tbl.num_rows:
        q_stage = b.staging / QUARANTINE_DIR / f"part-{b.batch_id}-{stream}-c{chunk_no}.parquet"
        q_stage.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(quarantine_tbl.cast(QUARANTINE_SCHEMA), q_stage, compression=b.settings.compression)
        b.moves.append((QUARANTINE_DIR, StagedFile(q_stage, q_stage.name, quarantine_tbl.num_rows)))
        for item in pc.value_counts(quarantine_tbl.column("reason")).to_pylist():
            b.report.reasons[item["values"].split(":", 1)[0]] += item["counts"]


def _with_raw_lines(quarantined: pa.Table, lines: pa.Table) -> pa.Table:
    """``quarantined`` (with ``src_file_idx``) with each line's text as it arrived (``raw_line``,
    the newline cut), taken from the chunk's ``lines`` by position: the lines are in (file, line)
    order, so a binary search finds them. A join in SQL read every line of the chunk for the few
    quarantined ones (~2% of the ingest's CPU)."""
    quarantined = quarantined.sort_by([("src_file_idx", "ascending"), ("src_line", "ascending")])
    idx = quarantined.column("src_file_idx").to_numpy().astype(np.int64)
    key = (idx << 40) | quarantined.column("src_line").to_numpy()
    all_keys = ((lines.column("src_file_idx").to_numpy().astype(np.int64) << 40)
                | lines.column("src_line").to_numpy())
    at = np.searchsorted(all_keys, key)
    assert (at < len(all_keys)).all() and (all_keys[at] == key).all(), "a quarantined line is not in the chunk"
    # Taken chunk by chunk (one per landing file): a take on the whole chunked column first
    # concatenates it, a copy of the chunk's every line (~0.9 s per 256 MB).
    text = lines.column("line")
    starts = np.cumsum([0] + [len(c) for c in text.chunks])
    which = np.searchsorted(starts, at, side="right") - 1
    pieces = [text.chunks[c].take(pa.array(at[which == c] - starts[c])) for c in np.unique(which)]
    raw = pa.chunked_array(pieces, type=text.type) if pieces else pa.chunked_array([], type=text.type)
    raw = pc.utf8_rtrim(raw, characters="\n").cast(pa.string())
    out = quarantined.drop_columns(["src_file_idx"])
    return out.add_column(out.schema.get_field_index("event_id") + 1, "raw_line", raw)


def _validate(con: duckdb.DuckDBPyConnection, schema, settings: IngestSettings, now_ms: int,
              report: IngestReport, typed: pa.Table) -> pa.Table:
    """Judge the chunk's lines: ``typed`` (the valid lines the compiled path typed, fastpath.py)
    keep their columns in Arrow (``typed_lines``, with the payload hash added here: returned);
    the rest (``lines``) are parsed and judged in SQL (validate.py) into ``v_rows``, which keeps
    every column for the staging, and the temp table ``v`` (per SQL line its position, id, date,
    payload hash and reason, NULL: valid). The SQL's speculative query first: it skips
    ``json_valid`` for lines shaped like an object and raises if one of them is malformed after
    all; then the checked query, which judges every line alone, runs instead. All give the same
    rows (tests/ingest/test_fast_validation.py)."""
    kw = dict(future_skew_ms=settings.future_skew_seconds * 1000,
              max_lateness_ms=settings.max_lateness_days * 86_400_000,
              max_ts_ms=settings.flush_limit_ms(now_ms))
    con.execute("DROP TABLE IF EXISTS v_rows")
    try:
        con.execute(f"CREATE TEMP TABLE v_rows AS {validation_sql(schema, speculative=True, **kw)}")
    except (duckdb.InvalidInputException, UnicodeDecodeError):
        # "Malformed JSON" (DuckDB's message quotes the line: when that is not UTF-8 the binding
        # fails to decode the message itself, hence UnicodeDecodeError).
        report.checked_chunks += 1
        con.execute("DROP TABLE IF EXISTS v_rows")
        con.execute(f"CREATE TEMP TABLE v_rows AS {validation_sql(schema, **kw)}")
    # The payload hash of the typed lines, once (the staging reads it too), with the SQL's own
    # expression; in the lines' order, to go beside their columns.
    con.register("typed_lines", typed)
    con.execute("SET preserve_insertion_order = true")
    hashes = con.sql(f"SELECT {payload_hash_sql(schema)} FROM typed_lines").to_arrow_table().column(0)
    con.execute("SET preserve_insertion_order = false")
    typed = typed.append_column("payload_hash", hashes)
    con.register("typed_lines", typed)
    # ``v``: the keys of the SQL's lines only; the typed ones (all valid) are judged from Arrow.
    con.execute("DROP TABLE IF EXISTS v")
    con.execute("CREATE TEMP TABLE v AS SELECT src_file_idx, src_line, event_id, event_date, payload_hash, reason "
                "FROM v_rows")
    return typed


def _not_utf8_lines(con: duckdb.DuckDBPyConnection, unchecked: dict[int, tuple[pa.Array, np.ndarray]]) -> list[dict]:
    """The lines of the ``unchecked`` files (index -> (lines, line numbers)) that are not UTF-8,
    as ``bad_utf8_rows`` entries. Only the lines the parser refused (``malformed_json`` in v) are
    candidates: the JSON parser takes no byte sequence that is not UTF-8."""
    out = []
    suspects = con.execute("SELECT src_file_idx, src_line FROM v WHERE reason = 'malformed_json'").fetchall()
    for idx, line_no in sorted(suspects):
        if idx not in unchecked:
            continue
        lines, nos = unchecked[idx]
        i = int(np.searchsorted(nos, line_no))
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset :]
        raw = bytes(memoryview(lines.buffers()[2])[int(offsets[i]) : int(offsets[i + 1])])
        try:
            codecs.utf_8_decode(raw, "strict", True)
        except UnicodeDecodeError:
            out.append({"src_file_idx": idx, "src_line": int(line_no), "raw": raw})
    return out


# ------------------------------------------------------------------------------------- auditing


def count_records(path: Path) -> int:
    """Non-empty lines in a landing file, counted from the bytes alone (no parsing)."""
    if shown_path(str(path)) != str(path):  # Arrow takes only UTF-8 paths
        buf = pa.py_buffer(path.read_bytes())
    else:
        with pa.OSFile(str(path)) as fh:
            buf = fh.read_buffer()
    if buf.size == 0:
        return 0
    a = np.frombuffer(buf, dtype=np.uint8)
    newlines = np.flatnonzero(a == 10)
    ends = np.concatenate((newlines, [len(a)]))
    starts = np.concatenate(([0], newlines + 1))
    return int(np.count_nonzero(ends > starts))


def _window_days(first: dt.date, last: dt.date, lateness_days: int) -> list[str]:
    """The dates where a copy of an event dated in [first, last] may lie."""
    lo = first - dt.timedelta(days=lateness_days)
    return [(lo + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 2 * lateness_days + 1)]


def _events_source(con: duckdb.DuckDBPyConnection, lake: Lake, stream: str, days: Iterable[str] | None,
                   version: int | None = None) -> str | None:
    return table_source(con, lake, events_table(stream), days=days, version=version)


def table_source(con: duckdb.DuckDBPyConnection, lake: Lake | Path | str, table: str, *,
                 days: Iterable[str] | None = None, version: int | None = None,
                 date_column: str = "event_date") -> str | None:
    """A FROM-clause item for a lake table's committed rows at ``version`` (default: the newest),
    only those dated in ``days`` if given (tables partitioned by ``date_column``); None when there
    are none (or the table does not exist yet).

    The files come from the Delta snapshot, never from a listing: a file a dead writer left behind
    or one compaction replaced is not in it. On local disk DuckDB reads the files natively (with
    the ``event_date`` partition column from their hive-style folders); on object storage it scans
    the snapshot's Arrow dataset, registered on ``con``.
    """
    lake = lake if isinstance(lake, Lake) else Lake(lake)
    wanted = set(days) if days is not None else None
    t = lake.store.table(table, version)
    if t is None:
        return None
    partitioned = date_column in t.metadata().partition_columns
    files = _partition_files(lake, table, date_column, wanted if partitioned else None, version)
    if not files:
        return None
    if lake.store.is_local:
        hive = ", hive_partitioning = true" if partitioned else ""
        return f"read_parquet([{', '.join(sql_path(f) for f in files)}]{hive})"
    alias = f"_lake_{hashlib.sha1(repr((table, version, sorted(wanted or ()))).encode()).hexdigest()[:12]}"
    parts = [(date_column, "in", sorted(wanted))] if partitioned and wanted is not None else None
    con.register(alias, lake.store.arrow_dataset(t, table, parts))
    return alias


def _partition_files(lake: Lake, table: str, column: str, values: set[str] | None,
                     version: int | None = None, name_prefix: str | None = None) -> list[str]:
    """Full paths (local) or s3:// URIs of a committed version's files, by partition value and name."""
    acts = lake.store.add_actions(table, version)
    if acts is None or acts.num_rows == 0:
        return []
    paths = acts.column("path").to_pylist()
    parts = (acts.column(f"partition.{column}").to_pylist() if values is not None else [None] * len(paths))
    base = lake.store.uri(table)
    out = []
    for path, part in zip(paths, parts):
        if values is not None and str(part) not in values:
            continue
        if name_prefix and not path.rsplit("/", 1)[-1].startswith(name_prefix):
            continue
        out.append(f"{base}/{urllib.parse.unquote(path)}")
    # Sorted (partition folder, then name): the log's order varies with how a snapshot was
    # loaded, and a float sum over the files in another order changes in its last bit.
    return sorted(out)


def _read_files(lake: Lake, files: list[str], columns: list[str]) -> pa.Table:
    paths = [f[len("s3://"):] if f.startswith("s3://") else f for f in files]
    return pads.dataset(paths, format="parquet", filesystem=lake.store.filesystem()).to_table(columns=columns)


def _batch_rows(lake: Lake, table: str, batch_id: str, src_col: str, batch_col: str, logged: int) -> Counter:
    """A batch's committed rows in a table, per source file. Its own files (named for it) first:
    cheap, and right until compaction merges them, which leaves a partition alone for a day
    (``CarePolicy``); when they no longer hold what the log says, the whole table is scanned."""
    files = _partition_files(lake, table, "event_date", None, name_prefix=f"part-{batch_id}-")
    rows = (_read_files(lake, files, [src_col, batch_col]).filter(pc.field(batch_col) == batch_id)
            if files else None)
    if rows is None or rows.num_rows != logged:
        ds = lake.store.dataset(table)
        rows = ds.to_table(columns=[src_col], filter=pc.field(batch_col) == batch_id) if ds is not None else None
    return Counter(rows.column(src_col).to_pylist()) if rows is not None else Counter()


def audit_batch(lake_root: Path | str, landing_root: Path | str, batch_id: str,
                store: TableStore | None = None) -> list[str]:
    """Recount a committed batch from what the tables hold; an empty list means it balances.

    Independent of the counters the batch logged: lines are recounted from the landing bytes,
    lake and quarantine rows are counted in the files the tables' Delta logs name for the batch
    (each carries the batch id in its name and in ``_batch_id``/``batch_id``).
    """
    lake = Lake(lake_root, store)
    log_all = lake.read_ingest_log()
    log = [r for r in log_all.to_pylist() if r["batch_id"] == batch_id]
    if not log:
        return [f"batch {batch_id} has no commit record"]
    lake_rows: Counter = Counter()
    for stream in {r["stream"] for r in log}:
        logged = sum(r["rows_lake"] for r in log if r["stream"] == stream)
        lake_rows.update(_batch_rows(lake, events_table(stream), batch_id, "_src_file", "_batch_id", logged))
    q_rows = _batch_rows(lake, QUARANTINE_DIR, batch_id, "src_file", "batch_id",
                         sum(r["rows_quarantine"] for r in log))
    problems = []
    undecodable: dict[str, Path] | None = None
    for r in log:
        rel = r["rel_path"]
        if r.get("file_reason") == "undecodable_name":
            # The log holds the name with \xNN escapes, which name no file: find it by identity.
            if undecodable is None:
                undecodable = {f.key: Path(landing_root) / f.rel_path for f in list_landing_files(Path(landing_root))
                               if shown_path(f.rel_path) != f.rel_path}
            if r["file_key"] not in undecodable:
                problems.append(f"{rel}: no landing file has this identity any more")
                continue
            path = undecodable[r["file_key"]]
        else:
            path = safe_landing_path(Path(landing_root), rel, posix=True)
        lines = count_records(path)
        if lines != r["rows_read"]:
            problems.append(f"{rel}: {lines} lines on disk, {r['rows_read']} logged as read")
        if lake_rows[rel] != r["rows_lake"] or q_rows[rel] != r["rows_quarantine"]:
            problems.append(
                f"{rel}: lake {lake_rows[rel]} (logged {r['rows_lake']}), quarantine "
                f"{q_rows[rel]} (logged {r['rows_quarantine']})"
            )
        if lines != lake_rows[rel] + q_rows[rel] + r["rows_duplicate"]:
            problems.append(
                f"{rel}: {lines} lines != lake {lake_rows[rel]} + quarantine {q_rows[rel]} "
                f"+ duplicates {r['rows_duplicate']}"
            )
    return problems


def lake_dates(lake_root: Path | str, stream: str, store: TableStore | None = None) -> list[str]:
    """The dates the stream's committed version holds rows for, from its Delta log."""
    acts = Lake(lake_root, store).store.add_actions(events_table(stream))
    if acts is None or acts.num_rows == 0:
        return []
    return sorted({str(d) for d in acts.column("partition.event_date").to_pylist()})


def lake_partitions(lake_root: Path | str, stream: str, first: dt.date, last: dt.date,
                    lateness_days: int, store: TableStore | None = None) -> list[str]:
    """The stream's dates holding rows from ``first - lateness_days`` to ``last + lateness_days``:
    where a copy of an event dated in [first, last] may lie."""
    window = set(_window_days(first, last, lateness_days))
    return [d for d in lake_dates(lake_root, stream, store) if d in window]


def duplicate_event_ids(lake_root: Path | str, stream: str, dates: Iterable[str],
                        lateness_days: int | None = None, store: TableStore | None = None) -> int:
    """How many rows repeat an event_id (0 = exactly once), in the committed version.

    Without ``lateness_days``: within the given dates. With it: every row of the given dates is
    compared with every date within ``lateness_days`` of them (the window the ingest's dedupe
    covers); a row counts when its id has another copy dated within ``lateness_days`` of it. Only
    the ids of the given dates probe the window (no aggregate over the whole window: 30 days of
    1M events took 27 s and 5 GB that way; this, a few seconds). Duplicates between two dates
    that were not given are left to the run that touched them.
    """
    lake = Lake(lake_root, store)
    days = sorted({dt.date.fromisoformat(d) for d in dates})
    if not days:
        return 0
    con = duckdb.connect()
    try:
        touched = _events_source(con, lake, stream, [d.isoformat() for d in days])
        if touched is None:
            return 0
        if lateness_days is None:
            return con.execute(f"SELECT count(*) - count(DISTINCT event_id) FROM {touched}").fetchall()[0][0]
        window = _events_source(con, lake, stream, _window_days(days[0], days[-1], lateness_days))
        ts = STREAMS[stream].partition_field
        return con.execute(
            f"""
            WITH ids AS (SELECT DISTINCT event_id FROM {touched}),
            w AS (SELECT event_id, CAST(epoch_ms({ts}) AS DATE) AS d FROM {window} SEMI JOIN ids USING (event_id)),
            o AS (SELECT d - lag(d) OVER (PARTITION BY event_id ORDER BY d) AS gap FROM w)
            SELECT count(*) FROM o WHERE gap <= {int(lateness_days)}
            """
        ).fetchall()[0][0]
    finally:
        con.close()


def lake_row_count(lake_root: Path | str, stream: str, store: TableStore | None = None) -> int:
    """Rows in the stream's committed version, from the Delta log's per-file counts."""
    return Lake(lake_root, store).store.row_count(events_table(stream))


def table_row_count(lake_root: Path | str, table: str, store: TableStore | None = None) -> int:
    """Rows in a lake table's committed version (``quarantine``, ``ingest_log``, ``events/<s>``)."""
    return Lake(lake_root, store).store.row_count(table)
