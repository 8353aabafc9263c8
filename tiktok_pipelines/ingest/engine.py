"""Landing files -> typed, validated, deduplicated Parquet lake, with quarantine and an ingest log.

Guarantees (each tested):
- Accounting: for every landing file, lines read = rows in the lake + rows in quarantine + exact
  duplicates dropped. The batch refuses to commit if its own counts do not balance.
- Exactly once: a row is in the lake at most once per ``event_id`` among rows dated within
  ``max_lateness_days`` of each other, whatever their dates; a later copy with the same payload
  (every typed value, the timestamp included) is an exact duplicate (counted, dropped), one with
  another payload, such as a re-send re-stamped to another time or date, is quarantined as a
  conflicting duplicate.
- Idempotence: a file whose identity is in the ingest log is skipped; output names derive from the
  batch id, which derives from the files' identities.
- Crash safety: a batch stages its Parquet files, writes a pending manifest, renames them into the
  lake and then writes its ingest-log file, which is the commit record. A batch found pending at
  the next start (the writer died) is rolled back before anything else happens.
- One bad file never blocks the others: a file the engine cannot take as it is (see
  ``FILE_REASONS``) is quarantined as a file, every line of it with the file's reason, and logged
  with that reason in ``file_reason``; the rest of the batch commits, and the file, being in the
  log, is never tried again. An empty file is an ordinary file with no rows.
- No flush time beyond the ingest's clock: a file's flush time (from its name, else its mtime)
  later than ``now_ms`` + ``future_skew_seconds`` quarantines the file (``future_flush_time``), and
  an event later than that is ``future_timestamp`` whatever its file's name says.

Layout under ``lake_root``::

    events/<stream>/event_date=YYYY-MM-DD/part-<batch>-c<chunk>-<i>.parquet
    quarantine/part-<batch>-<stream>-c<chunk>.parquet
    ingest_log/batch-<batch>.parquet
    _staging/<batch>/...      _pending/<batch>.json      _ingest.lock
"""

from __future__ import annotations

import codecs
import datetime as dt
import glob
import hashlib
import json
import os
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tiktok_pipelines.ingest.landing import (
    LandingFile,
    list_landing_files,
    name_problem,
    safe_landing_path,
    shown_path,
)
from tiktok_pipelines.ingest.validate import validation_sql
from tiktok_pipelines.lake import (
    atomic_replace,
    atomic_write_json,
    exclusive_lock,
    fsync_path,
    sql_path,
)
from tiktok_pipelines.schemas import STREAMS

EVENTS_DIR = "events"
QUARANTINE_DIR = "quarantine"
INGEST_LOG_DIR = "ingest_log"
STAGING_DIR = "_staging"
PENDING_DIR = "_pending"

# DuckDB writes Parquet row groups in parallel: 500k-row groups left one of the two cores idle
# and wrote at half the speed of this size, which is still big enough for fast scans.
ROW_GROUP_ROWS = 122_880

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
    rolled_back_batches: list[str] = field(default_factory=list)
    seconds: float = 0.0

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
    """The Parquet lake on a local (or mounted shared) file system."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def events_dir(self, stream: str) -> Path:
        return self.root / EVENTS_DIR / stream

    def events_glob(self, stream: str) -> str:
        return str(self.events_dir(stream) / "*" / "*.parquet")

    @property
    def quarantine_glob(self) -> str:
        return str(self.root / QUARANTINE_DIR / "*.parquet")

    @property
    def ingest_log_glob(self) -> str:
        return str(self.root / INGEST_LOG_DIR / "*.parquet")

    def read_ingest_log(self) -> pa.Table:
        """Every commit record, in INGEST_LOG_SCHEMA (columns added since a file was written read as NULL)."""
        d = self.root / INGEST_LOG_DIR
        files = sorted(d.glob("*.parquet")) if d.is_dir() else []
        if not files:
            return INGEST_LOG_SCHEMA.empty_table()
        return pa.concat_tables([pq.read_table(f, schema=INGEST_LOG_SCHEMA) for f in files])

    def ingested_keys(self) -> set[str]:
        return set(self.read_ingest_log().column("file_key").to_pylist())

    def recover(self) -> list[str]:
        """Roll back batches that staged or moved files but never wrote their commit record."""
        rolled_back: list[str] = []
        pending_dir = self.root / PENDING_DIR
        staging_root = self.root / STAGING_DIR
        for manifest_path in sorted(pending_dir.glob("*.json")) if pending_dir.is_dir() else []:
            manifest = json.loads(manifest_path.read_text())
            batch_id = manifest["batch_id"]
            committed = (self.root / INGEST_LOG_DIR / f"batch-{batch_id}.parquet").exists()
            if not committed:
                for rel in manifest["final_paths"]:
                    (self.root / rel).unlink(missing_ok=True)
                rolled_back.append(batch_id)
            manifest_path.unlink()
        # Staging without a manifest: the writer died before publishing anything.
        if staging_root.is_dir():
            for d in staging_root.iterdir():
                shutil.rmtree(d, ignore_errors=True)
        return rolled_back


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
) -> IngestReport:
    """Ingest ``files`` into the lake as one atomic batch (files already ingested are skipped)."""
    settings = settings or IngestSettings()
    lake = Lake(lake_root)
    landing_root = Path(landing_root)
    started = time.perf_counter()
    lake.root.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(lake.root / "_ingest.lock"):
        rolled_back = lake.recover()
        done = lake.ingested_keys()
        todo = [f for f in sorted(set(files)) if f.key not in done]
        report = IngestReport(batch_id=batch_id_for(todo) if todo else None, rolled_back_batches=rolled_back)
        report.skipped_files = sorted(f.rel_path for f in files if f.key in done)
        if todo:
            try:
                _run_batch(todo, report, lake, landing_root, settings, now_ms or int(time.time() * 1000))
            except BaseException:
                # Free the staged bytes now (on a full disk they would keep it full until the next
                # run); whatever was already moved into the lake is in the pending manifest, which
                # the next run rolls back.
                shutil.rmtree(lake.root / STAGING_DIR / report.batch_id, ignore_errors=True)
                raise
    report.seconds = time.perf_counter() - started
    return report


def _run_batch(
    todo: list[LandingFile],
    report: IngestReport,
    lake: Lake,
    landing_root: Path,
    settings: IngestSettings,
    now_ms: int,
) -> None:
    batch_id = report.batch_id
    assert batch_id is not None
    staging = lake.root / STAGING_DIR / batch_id
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)

    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    if settings.duckdb_threads:
        con.execute(f"SET threads = {int(settings.duckdb_threads)}")
    moves: list[tuple[Path, Path]] = []
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
    for stream, stream_files in sorted(by_stream.items()):
        # The ids this batch has put in the lake so far (the lake's own are probed per chunk).
        con.execute("DROP TABLE IF EXISTS seen")
        con.execute("CREATE TEMP TABLE seen (event_id VARCHAR, payload_hash UBIGINT)")
        for chunk_no, chunk in enumerate(_chunks(stream_files, settings.chunk_bytes)):
            _ingest_chunk(
                con, stream, chunk, chunk_no, counts, report, lake, landing_root,
                staging, settings, batch_id, now_ms, moves,
            )
    con.close()

    for c in counts.values():
        if not c.balanced:
            shutil.rmtree(staging, ignore_errors=True)
            raise AccountingError(
                f"{c.file.rel_path}: read {c.rows_read} != lake {c.rows_lake} + quarantine "
                f"{c.rows_quarantine} + duplicates {c.rows_duplicate}; batch {batch_id} not committed"
            )

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
    log_tmp = staging / "ingest_log.parquet"
    pq.write_table(log, log_tmp)

    # Publish: manifest first (so a crash mid-way can be rolled back), then the renames, then the
    # commit record, then clean up.
    manifest = {
        "batch_id": batch_id,
        "final_paths": [str(dst.relative_to(lake.root)) for _, dst in moves],
    }
    pending = lake.root / PENDING_DIR / f"{batch_id}.json"
    atomic_write_json(pending, manifest)
    touched_dirs: set[Path] = set()
    for src, dst in moves:
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        touched_dirs.add(dst.parent)
    for d in touched_dirs:
        fsync_path(d)
    atomic_replace(log_tmp, lake.root / INGEST_LOG_DIR / f"batch-{batch_id}.parquet")
    pending.unlink()
    shutil.rmtree(staging, ignore_errors=True)
    report.files = list(counts.values())


def _ingest_chunk(
    con: duckdb.DuckDBPyConnection,
    stream: str,
    chunk: list[LandingFile],
    chunk_no: int,
    counts: dict[str, FileCounts],
    report: IngestReport,
    lake: Lake,
    landing_root: Path,
    staging: Path,
    settings: IngestSettings,
    batch_id: str,
    now_ms: int,
    moves: list[tuple[Path, Path]],
) -> None:
    schema = STREAMS[stream]
    line_arrays: list[pa.Array] = []
    line_nos: list[np.ndarray] = []
    file_idx: list[np.ndarray] = []
    bad_utf8_rows: list[dict] = []
    file_reasons = [counts[f.key].file_reason for f in chunk]
    for idx, f in enumerate(chunk):
        # The POSIX rule: a name the strict rule refuses is inside the zone all the same (the
        # listing found it without following a symlink), and its lines go to quarantine.
        path = safe_landing_path(landing_root, f.rel_path, posix=True)
        # Memory-mapped, not read: no copy, and the page cache serves it. Landing files are
        # immutable once renamed into place (the collector contract), so the mapping is stable.
        buf = _map_file(path)
        lines, nos = _split_lines(buf)
        counts[f.key].rows_read = len(lines)
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
    files_tbl = pa.table(
        {
            "src_file_idx": pa.array(range(len(chunk)), pa.int32()),
            "rel_path": [f.shown_path for f in chunk],
            "flushed_at_ms": [f.flushed_at_ms for f in chunk],
        }
    )
    con.register("lines", lines_tbl)
    con.register("files", files_tbl)
    sql = validation_sql(
        schema,
        future_skew_ms=settings.future_skew_seconds * 1000,
        max_lateness_ms=settings.max_lateness_days * 86_400_000,
        max_ts_ms=settings.flush_limit_ms(now_ms),
    )
    con.execute("DROP TABLE IF EXISTS v")
    con.execute(f"CREATE TEMP TABLE v AS {sql}")
    for idx, reason in enumerate(file_reasons):
        if reason:  # rare: every line of the file takes the file's reason, whatever it was
            con.execute("UPDATE v SET reason = ? WHERE src_file_idx = ?", [reason, idx])

    # The lake's copies of this chunk's ids: every partition within the allowed lateness of the
    # chunk's dates, so a re-send re-stamped to another date is recognised too. Only the ids
    # probe it (a hash of the chunk's ids; the partitions' event_id and hash columns stream past
    # it), so the cost is one scan of those two columns per chunk, and nothing when the window
    # holds no partition (a first load, a backfill into an empty lake).
    span = con.execute("SELECT min(event_date), max(event_date) FROM v WHERE reason IS NULL").fetchall()[0]
    window = lake_partitions(lake.root, stream, span[0], span[1], settings.max_lateness_days) if span[0] else []
    con.execute("DROP TABLE IF EXISTS lake_hits")
    if window:
        con.execute(
            # any_value: one row per id even if the lake ever held two copies.
            f"CREATE TEMP TABLE lake_hits AS SELECT p.event_id, any_value(p._payload_hash) AS payload_hash "
            f"FROM read_parquet([{', '.join(sql_path(str(d / '*.parquet')) for d in window)}]) p "
            f"SEMI JOIN (SELECT event_id FROM v WHERE reason IS NULL) USING (event_id) GROUP BY p.event_id"
        )
    else:
        con.execute("CREATE TEMP TABLE lake_hits (event_id VARCHAR, payload_hash UBIGINT)")

    # Duplicates are rare: rank only the ids that occur twice in the chunk or were seen before.
    con.execute("DROP TABLE IF EXISTS judged")
    con.execute(
        """
        CREATE TEMP TABLE judged AS
        WITH valid AS (SELECT event_id, src_file_idx, src_line, payload_hash FROM v WHERE reason IS NULL),
        -- `seen` grows with every chunk of a large batch: hash the chunk and scan `seen` once,
        -- never build a hash table over `seen` (that made big backfills quadratic).
        -- An id both in the lake (outside an earlier chunk's window) and in `seen`: the lake's
        -- copy came first, its hash decides.
        seen_hits AS (
            SELECT event_id, arg_min(payload_hash, src) AS payload_hash FROM (
                SELECT event_id, payload_hash, 0 AS src FROM lake_hits
                UNION ALL
                SELECT s.event_id, s.payload_hash, 1 AS src FROM seen s SEMI JOIN valid USING (event_id)
            ) GROUP BY event_id
        ),
        dup_ids AS (
            SELECT event_id FROM valid GROUP BY event_id HAVING count(*) > 1
            UNION SELECT event_id FROM seen_hits
        ),
        ranked AS (
            SELECT valid.*,
                   row_number() OVER w AS rn,
                   first_value(payload_hash) OVER w AS first_hash
            FROM valid SEMI JOIN dup_ids USING (event_id)
            WINDOW w AS (PARTITION BY event_id ORDER BY src_file_idx, src_line)
        )
        SELECT r.src_file_idx, r.src_line,
               CASE
                 WHEN s.event_id IS NOT NULL THEN
                   CASE WHEN r.payload_hash = s.payload_hash THEN 'duplicate' ELSE 'conflict' END
                 WHEN r.rn = 1 THEN 'lake'
                 WHEN r.payload_hash = r.first_hash THEN 'duplicate'
                 ELSE 'conflict'
               END AS outcome
        FROM ranked r LEFT JOIN seen_hits s USING (event_id)
        """
    )
    # Outcome per line without copying the wide table again: judged holds only the rare
    # duplicate candidates, everything else valid goes to the lake.
    outcome_sql = """
        CASE WHEN v.reason IS NOT NULL OR j.outcome = 'conflict' THEN 'quarantine'
             ELSE coalesce(j.outcome, 'lake') END
    """
    con.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW c AS
        SELECT v.*, {outcome_sql} AS outcome,
               coalesce(v.reason, CASE WHEN j.outcome = 'conflict' THEN 'conflicting_duplicate' END) AS final_reason
        FROM v LEFT JOIN judged j USING (src_file_idx, src_line)
        """
    )
    con.execute("INSERT INTO seen SELECT event_id, payload_hash FROM c WHERE outcome = 'lake'")

    names = ", ".join(f"c.{n}" for n in schema.field_names)
    # The source path per row from a constant list rather than a join: same result, less work.
    src_paths = "[" + ", ".join(sql_path(f.shown_path) for f in chunk) + "]"
    lake_dates = [r[0] for r in con.execute(
        "SELECT DISTINCT strftime(event_date, '%Y-%m-%d') FROM c WHERE outcome = 'lake' ORDER BY 1"
    ).fetchall()]
    # One plain COPY per date instead of PARTITION_BY: DuckDB's partitioned writer ran at half the
    # speed here, and a chunk rarely spans more than a few dates (late events).
    for day in lake_dates:
        src = staging / EVENTS_DIR / stream / f"event_date={day}" / f"part-{batch_id}-c{chunk_no}.parquet"
        src.parent.mkdir(parents=True, exist_ok=True)
        con.execute(
            f"""
            COPY (
                SELECT {names},
                       {src_paths}[c.src_file_idx + 1] AS _src_file, c.src_line AS _src_line,
                       '{batch_id}' AS _batch_id, c.payload_hash AS _payload_hash
                FROM c
                WHERE c.outcome = 'lake' AND c.event_date = DATE '{day}'
            ) TO {sql_path(src)} (
                FORMAT parquet, COMPRESSION {settings.compression}, ROW_GROUP_SIZE {ROW_GROUP_ROWS}
            )
            """
        )
        moves.append((src, lake.events_dir(stream) / f"event_date={day}" / src.name))
        report.dates_by_stream[stream].add(day)

    quarantine_tbl = con.sql(
        f"""
        SELECT '{stream}' AS stream, fl.rel_path AS src_file, c.src_line::BIGINT AS src_line,
               c.final_reason AS reason, c.event_id, rtrim(l.line::VARCHAR, E'\n') AS raw_line,
               '{batch_id}' AS batch_id, {int(now_ms)}::BIGINT AS ingested_at_ms
        FROM c JOIN files fl USING (src_file_idx) JOIN lines l USING (src_file_idx, src_line)
        WHERE c.outcome = 'quarantine'
        """
    ).to_arrow_table()
    if bad_utf8_rows:
        quarantine_tbl = pa.concat_tables(
            [
                quarantine_tbl.cast(QUARANTINE_SCHEMA),
                pa.table(
                    {
                        "stream": [stream] * len(bad_utf8_rows),
                        "src_file": [chunk[r["src_file_idx"]].shown_path for r in bad_utf8_rows],
                        "src_line": [r["src_line"] for r in bad_utf8_rows],
                        "reason": [file_reasons[r["src_file_idx"]] or "malformed_json:invalid_utf8"
                                   for r in bad_utf8_rows],
                        "event_id": [None] * len(bad_utf8_rows),
                        # Kept readable; the exact bytes stay in the landing file at src_file:src_line.
                        "raw_line": [r["raw"].rstrip(b"\n").decode("utf-8", "backslashreplace") for r in bad_utf8_rows],
                        "batch_id": [batch_id] * len(bad_utf8_rows),
                        "ingested_at_ms": [now_ms] * len(bad_utf8_rows),
                    },
                    schema=QUARANTINE_SCHEMA,
                ),
            ]
        )
    if quarantine_tbl.num_rows:
        q_stage = staging / QUARANTINE_DIR / f"part-{batch_id}-{stream}-c{chunk_no}.parquet"
        q_stage.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(quarantine_tbl.cast(QUARANTINE_SCHEMA), q_stage, compression=settings.compression)
        moves.append((q_stage, lake.root / QUARANTINE_DIR / q_stage.name))
        for reason in quarantine_tbl.column("reason").to_pylist():
            report.reasons[reason.split(":", 1)[0]] += 1

    for idx, outcome, n in con.execute(
        "SELECT src_file_idx, outcome, count(*) FROM c GROUP BY ALL"
    ).fetchall():
        fc = counts[chunk[idx].key]
        if outcome == "lake":
            fc.rows_lake += n
        elif outcome == "quarantine":
            fc.rows_quarantine += n
        else:
            fc.rows_duplicate += n
    for r in bad_utf8_rows:
        counts[chunk[r["src_file_idx"]].key].rows_quarantine += 1
    con.execute("DROP VIEW c")
    con.execute("DROP TABLE v")
    con.execute("DROP TABLE lake_hits")
    con.unregister("files")
    con.unregister("lines")


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


def audit_batch(lake_root: Path | str, landing_root: Path | str, batch_id: str) -> list[str]:
    """Recount a committed batch from what is on disk; an empty list means it balances.

    Independent of the counters the batch logged: lines are recounted from the landing bytes,
    lake and quarantine rows are counted in the Parquet files the batch published.
    """
    lake = Lake(lake_root)
    log_path = lake.root / INGEST_LOG_DIR / f"batch-{batch_id}.parquet"
    if not log_path.exists():
        return [f"batch {batch_id} has no commit record"]
    log = pq.read_table(log_path).to_pylist()
    con = duckdb.connect()
    lake_rows: Counter = Counter()
    for stream in {r["stream"] for r in log}:
        pattern = lake.events_dir(stream) / "*" / f"part-{batch_id}-*.parquet"
        if any(lake.events_dir(stream).glob(f"*/part-{batch_id}-*.parquet")):
            for src, n in con.execute(
                f"SELECT _src_file, count(*) FROM read_parquet({sql_path(pattern)}) GROUP BY 1"
            ).fetchall():
                lake_rows[src] += n
    q_rows: Counter = Counter()
    if any((lake.root / QUARANTINE_DIR).glob(f"part-{batch_id}-*.parquet")):
        qglob = lake.root / QUARANTINE_DIR / f"part-{batch_id}-*.parquet"
        for src, n in con.execute(
            f"SELECT src_file, count(*) FROM read_parquet({sql_path(qglob)}) GROUP BY 1"
        ).fetchall():
            q_rows[src] += n
    con.close()
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


def lake_partitions(lake_root: Path | str, stream: str, first: dt.date, last: dt.date,
                    lateness_days: int) -> list[Path]:
    """The stream's partition folders holding Parquet, dated from ``first - lateness_days`` to
    ``last + lateness_days``: where a copy of an event dated in [first, last] may lie."""
    lo, hi = first - dt.timedelta(days=lateness_days), last + dt.timedelta(days=lateness_days)
    base = Lake(lake_root).events_dir(stream)
    out = []
    for d in sorted(base.glob("event_date=*")) if base.is_dir() else []:
        try:
            day = dt.date.fromisoformat(d.name[len("event_date="):])
        except ValueError:
            continue
        if lo <= day <= hi and any(d.glob("*.parquet")):
            out.append(d)
    return out


def duplicate_event_ids(lake_root: Path | str, stream: str, dates: Iterable[str],
                        lateness_days: int | None = None) -> int:
    """How many rows repeat an event_id (0 = exactly once).

    Without ``lateness_days``: within the given date partitions. With it: every row of the given
    partitions is compared with every partition within ``lateness_days`` of them (the window the
    ingest's dedupe covers); a row counts when its id has another copy dated within
    ``lateness_days`` of it. Only the ids of the given partitions probe the window (no aggregate
    over the whole window: 30 days of 1M events took 27 s and 5 GB that way; this, a few seconds).
    Duplicates between two partitions that were not given are left to the run that touched them.
    """
    if lateness_days is not None:
        days = sorted({dt.date.fromisoformat(d) for d in dates})
        base = Lake(lake_root).events_dir(stream)
        touched = [str(base / f"event_date={d}" / "*.parquet") for d in days
                   if any((base / f"event_date={d}").glob("*.parquet"))]
        if not touched:
            return 0
        window = lake_partitions(lake_root, stream, days[0], days[-1], lateness_days)
        ts = STREAMS[stream].partition_field
        return _scalar(
            f"""
            WITH ids AS (SELECT DISTINCT event_id FROM read_parquet(?)),
            w AS (SELECT event_id, CAST(epoch_ms({ts}) AS DATE) AS d FROM read_parquet(?) SEMI JOIN ids USING (event_id)),
            o AS (SELECT d - lag(d) OVER (PARTITION BY event_id ORDER BY d) AS gap FROM w)
            SELECT count(*) FROM o WHERE gap <= {int(lateness_days)}
            """,
            [touched, [str(p / "*.parquet") for p in window]],
        )
    lake = Lake(lake_root)
    globs = [
        str(lake.events_dir(stream) / f"event_date={d}" / "*.parquet")
        for d in sorted(dates)
        if any((lake.events_dir(stream) / f"event_date={d}").glob("*.parquet"))
    ]
    if not globs:
        return 0
    return _scalar("SELECT count(*) - count(DISTINCT event_id) FROM read_parquet(?)", [globs])


def parquet_row_count(pattern: str) -> int:
    """Rows in the Parquet files matching ``pattern``, from their footers (no data is read)."""
    if not glob.glob(pattern):
        return 0
    return _scalar("SELECT coalesce(sum(num_rows), 0) FROM parquet_file_metadata(?)", [pattern])


def _scalar(sql: str, params: list) -> int:
    """One value from a throwaway in-memory DuckDB (the lake is plain files: no shared state)."""
    con = duckdb.connect()
    try:
        return con.execute(sql, params).fetchall()[0][0]
    finally:
        con.close()


def lake_row_count(lake_root: Path | str, stream: str) -> int:
    return parquet_row_count(Lake(lake_root).events_glob(stream))
