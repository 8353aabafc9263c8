"""The lake's tables as Delta Lake tables (delta-rs), on local disk or any S3-compatible store.

DESIGN.md decision 8: the lake is an open table format, not a protocol of our own. This module is
the one place that knows where the tables live and how a batch commits to one:

- **Where.** ``TableStore.from_config("data/lake")`` keeps them under a local directory (the
  default); ``TableStore.from_config("s3://bucket/prefix", endpoint_url=..., region=...)`` puts
  them in a bucket. Credentials come from the standard AWS environment variables
  (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``), never from the repo.
  Concurrent writers on S3 use the store's conditional writes (``aws_conditional_put=etag``), so
  no lock service is needed.
- **Committing.** ``commit(name, data, txn=...)`` appends ``data`` to a table as one Delta
  transaction carrying an application transaction id, and skips it when that id is already in
  the table's log: a retried or concurrent commit of the same batch lands exactly once. The id is
  one per batch (``txn = "ingest:<batch id>"``), not one app id with a batch counter: batch ids
  are content hashes and several writers run at once, and Delta's transaction version is a
  per-app high-water mark, so a concurrent lower number would read as already committed.
- **Reading.** ``dataset(name, version=None)`` is the table at a committed version as an Arrow
  dataset (DuckDB scans it; polars reads the same table with ``scan_delta``): never a glob of
  files, so a reader sees only what a commit names.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.dataset as pads
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.transaction import AddAction

TXN_VERSION = 1  # every batch's transaction id is its own app id, at this version

# A table keeps every app transaction id in its snapshot unless told to forget old ones: one id per
# batch, a batch a minute, would make every snapshot load carry half a million ids after a year.
# An id only has to outlive any retry of its batch (a batch in flight is finished by the next
# ingest, minutes later), so ids older than this expire (delta.setTransactionRetentionDuration,
# honoured by delta-rs, with each id's lastUpdated set). The ingest's lease table is not created
# with it: its one id is the lease's generation and must never expire.
BATCH_TABLE_CONFIG = {"delta.setTransactionRetentionDuration": "interval 30 days"}


@dataclass(frozen=True)
class StagedFile:
    """A finished Parquet file on local disk, to be added to a table by ``commit_files``."""

    local_path: Path
    name: str  # the file's name in the table: unique per batch (it carries the batch id)
    num_records: int
    partition: dict[str, str] = field(default_factory=dict)  # {"event_date": "2026-01-01"}

    @property
    def rel_path(self) -> str:
        """Where it lies under the table: hive-style folders, as every Delta writer lays them out."""
        return "".join(f"{k}={urllib.parse.quote(v, safe='')}/" for k, v in self.partition.items()) + self.name


@dataclass(frozen=True)
class TableStore:
    """Where the lake's Delta tables live: ``root`` is a local directory or ``s3://bucket/prefix``."""

    root: str
    storage_options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, root: str | os.PathLike, *, endpoint_url: str | None = None, region: str | None = None,
                    allow_http: bool | None = None) -> TableStore:
        """A store from configuration. For ``s3://`` roots, unset values fall back to the AWS
        environment (``AWS_ENDPOINT_URL``, ``AWS_REGION``); plain http is allowed only for an
        http endpoint (a local test server) unless said otherwise."""
        root = str(root)
        if not root.startswith("s3://"):
            if "://" in root:
                raise ValueError(f"unsupported lake location {root!r}: a local path or s3://bucket/prefix")
            return cls(str(Path(root).absolute()))
        endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        options = {"aws_conditional_put": "etag"}
        if endpoint:
            options["AWS_ENDPOINT_URL"] = endpoint
        if region or os.environ.get("AWS_REGION"):
            options["AWS_REGION"] = region or os.environ["AWS_REGION"]
        if allow_http if allow_http is not None else bool(endpoint and endpoint.startswith("http://")):
            options["AWS_ALLOW_HTTP"] = "true"
        return cls(root.rstrip("/"), options)

    @property
    def is_local(self) -> bool:
        return not self.root.startswith("s3://")

    def uri(self, name: str) -> str:
        return f"{self.root}/{name}" if not self.is_local else str(Path(self.root) / name)

    def filesystem(self) -> pafs.FileSystem:
        """An Arrow file system over the store (paths below are ``<bucket>/<key>`` on S3)."""
        if self.is_local:
            return pafs.LocalFileSystem()
        o = self.storage_options
        endpoint = o.get("AWS_ENDPOINT_URL")
        parsed = urllib.parse.urlparse(endpoint) if endpoint else None
        return pafs.S3FileSystem(
            region=o.get("AWS_REGION"),
            endpoint_override=parsed.netloc if parsed else None,
            scheme=parsed.scheme if parsed else "https",
        )

    def fs_path(self, name: str, rel: str = "") -> str:
        """A table's (or a file's in it) path for ``filesystem()``."""
        base = self.uri(name)
        if not self.is_local:
            base = base[len("s3://"):]
        return f"{base}/{rel}" if rel else base

    def ensure(self, name: str, schema: pa.Schema, partition_by: list[str] | None = None,
               configuration: dict[str, str] | None = None) -> DeltaTable:
        """The table, created empty with ``schema`` if it does not exist (two racing creates are
        harmless: both write version 0's identical metadata, one wins, the other finds the table)."""
        t = self.table(name)
        if t is not None:
            return t
        try:
            write_deltalake(self.uri(name), schema.empty_table(), mode="append", partition_by=partition_by,
                            configuration=configuration, storage_options=self.storage_options or None)
        except Exception:
            if self.table(name) is None:  # not a lost race: a real failure
                raise
        return self.table(name)

    def commit_files(self, name: str, files: list[StagedFile], *, schema: pa.Schema, txn: str,
                     partition_by: list[str] | None = None, retries: int = 20) -> int | None:
        """Put already written Parquet files into a table and add them as one transaction with id
        ``txn``; None when that id is already in the log (nothing is added twice).

        The files are moved (local) or uploaded (S3, each try under names of its own) first. Until the
        commit names them they are invisible to every Delta reader; a writer that dies here
        leaves orphans that ``vacuum`` removes, never rows."""
        t = self.ensure(name, schema, partition_by, BATCH_TABLE_CONFIG)
        if t.transaction_version(txn) is not None:
            return None
        fs = self.filesystem()
        # On S3 each try uploads under names of its own (part-<batch>-c0-<token>.parquet). Two
        # writers finishing one batch at once (no lock there: the lease lets a writer finish a
        # batch whose writer is merely slow) uploaded the same names, and the later upload replaced
        # files the other had just committed with other bytes (DuckDB's output differs run to
        # run): the log's sizes no longer matched the objects, and polars and delta-rs's own reader
        # failed ("magic bytes not found in footer"). The losing try's files are orphans for
        # vacuum. Local writers take turns (writer_lock), so names stay as given there.
        token = "" if self.is_local else "-" + uuid.uuid4().hex[:8]
        placed = [(f, f.rel_path.removesuffix(".parquet") + token + ".parquet" if token else f.rel_path)
                  for f in files]
        for f, rel in placed:
            dst = self.fs_path(name, rel)
            if self.is_local:
                Path(dst).parent.mkdir(parents=True, exist_ok=True)
                os.replace(f.local_path, dst)
            else:
                pafs.copy_files(str(f.local_path), dst, source_filesystem=pafs.LocalFileSystem(),
                                destination_filesystem=fs)
        if self.is_local:
            from tiktok_pipelines.lake import fsync_path

            for d in {Path(self.fs_path(name, rel)).parent for _, rel in placed}:
                fsync_path(d)
        now_ms = int(time.time() * 1000)
        actions = [
            AddAction(rel, fs.get_file_info(self.fs_path(name, rel)).size, f.partition,
                      now_ms, True, json.dumps({"numRecords": f.num_records}))
            for f, rel in placed
        ]
        return self._commit_once(name, txn, t, retries, lambda snap, props: snap.create_write_transaction(
            actions, "append", schema, partition_by=partition_by, commit_properties=props))

    def _commit_once(self, name: str, txn: str, t: DeltaTable, retries: int,
                     write: Callable[[DeltaTable, CommitProperties], None]) -> int | None:
        """``write(snapshot, props)`` one commit carrying the transaction id ``txn``, against the
        newest snapshot, unless a commit with that id is already in it (None). Optimistic: a
        concurrent commit makes this one fail (Delta's conflict check, conditional puts on S3), and
        it looks again: the id is there (nothing to do) or another batch won the race (again)."""
        props = CommitProperties(app_transactions=[Transaction(txn, TXN_VERSION, last_updated=int(time.time() * 1000))])
        for attempt in range(retries):
            if attempt:
                t = self.table(name)
            if t.transaction_version(txn) is not None:
                return None
            try:
                write(t, props)
            except CommitFailedError:
                if attempt == retries - 1:
                    raise
                time.sleep(min(0.5, 0.01 * 2 ** attempt))
                continue
            return self.table(name).version()
        return None  # not reached: the loop returns or raises

    def swap(self, name: str, data: pa.Table, *, app: str, expected: int) -> bool:
        """Replace a small table's contents with ``data`` if the app transaction ``app`` is at
        version ``expected`` (0: never committed), committing ``expected + 1``; False when another
        writer moved it first. Delta refuses a commit whose app id a concurrent commit also
        carries, so of two writers swapping from the same version exactly one lands: a
        compare-and-swap on the store's conditional writes, with no lock service."""
        t = self.ensure(name, data.schema)
        if (t.transaction_version(app) or 0) != expected:
            return False
        try:
            write_deltalake(t, data, mode="overwrite", storage_options=self.storage_options or None,
                            commit_properties=CommitProperties(app_transactions=[Transaction(app, expected + 1)]))
        except CommitFailedError:
            return False
        return True

    def replace(self, name: str, data: pa.Table, *, where: tuple[str, str] | None = None,
                partition_by: list[str] | None = None, retries: int = 20) -> int:
        """Replace a derived table's rows in one transaction: all of them, or those with
        ``column = value`` for ``where=(column, value)`` (one date of a table partitioned by it).
        Returns the new version. The first write creates the table.

        Last writer wins, as a rebuild should: two builds of one partition at once both commit
        (Delta's conflict check fails the later one, which retries against the newer snapshot and
        replaces the rows again), never leaving both builds' rows or none."""
        if where is not None:
            column, value = where
            if not column.isidentifier():
                raise ValueError(f"not a column name: {column!r}")
            predicate = f"{column} = '{str(value).replace(chr(39), chr(39) * 2)}'"
        else:
            predicate = None
        opts = self.storage_options or None
        t = self.ensure(name, data.schema, partition_by)
        for attempt in range(retries):
            try:
                write_deltalake(t if attempt == 0 else self.uri(name), data, mode="overwrite",
                                predicate=predicate, partition_by=partition_by, storage_options=opts,
                                # A whole replace takes the new schema; a partition replace merges
                                # it (a feature column added or dropped: the other dates read NULL
                                # for what they lack, rather than every later build failing).
                                schema_mode="overwrite" if predicate is None else "merge")
                return self.table(name).version()
            except CommitFailedError:
                if attempt == retries - 1:
                    raise
                time.sleep(min(0.5, 0.01 * 2 ** attempt))
        raise AssertionError("not reached")

    def add_actions(self, name: str, version: int | None = None) -> pa.Table | None:
        """The files a committed version names, one row each: path, size_bytes, num_records,
        partition.<column> (the Delta log's view, no data read)."""
        t = self.table(name, version)
        return None if t is None else pa.table(t.get_add_actions(flatten=True))

    def row_count(self, name: str, version: int | None = None) -> int:
        """Rows in a committed version, from the log's per-file record counts."""
        a = self.add_actions(name, version)
        return 0 if a is None or a.num_rows == 0 else int(pa.compute.sum(a.column("num_records")).as_py() or 0)

    def table(self, name: str, version: int | None = None) -> DeltaTable | None:
        """The table at ``version`` (default: the newest committed one); None if it does not exist."""
        try:
            return DeltaTable(self.uri(name), version=version, storage_options=self.storage_options or None)
        except TableNotFoundError:
            return None

    def version(self, name: str) -> int | None:
        t = self.table(name)
        return None if t is None else t.version()

    def committed(self, name: str, txn: str) -> bool:
        """Whether a commit with this transaction id is in the table's log."""
        t = self.table(name)
        return t is not None and t.transaction_version(txn) is not None

    def commit(self, name: str, data: pa.Table, *, txn: str, partition_by: list[str] | None = None,
               retries: int = 20) -> int | None:
        """Append ``data`` as one transaction with id ``txn``. Returns the table's version just after
        it (its own commit's, unless another writer committed in between), or None when a commit
        with that id is already in the log (a retry, or a concurrent writer of the same batch won).

        Optimistic: the writer checks the id on the snapshot it commits against; a concurrent
        commit makes its own fail (Delta's conflict check, conditional puts on S3), and it looks
        again: the id is there (nothing to do) or another batch won the race (commit again)."""
        # The table is created empty first, without the id, and the batch commits against a
        # snapshot like any other commit: a commit that creates the table has no snapshot whose
        # transaction ids the conflict check could compare, and two writers racing to create it
        # with the same batch both landed (seen on S3 in CI).
        t = self.ensure(name, data.schema, partition_by, BATCH_TABLE_CONFIG)
        return self._commit_once(name, txn, t, retries, lambda snap, props: write_deltalake(
            snap, data, mode="append", storage_options=self.storage_options or None, commit_properties=props))

    def dataset(self, name: str, version: int | None = None, partitions: list | None = None) -> pads.Dataset | None:
        """The table at a committed version as an Arrow dataset (None if the table does not exist);
        ``partitions`` prunes files by partition value, e.g. ``[("event_date", "in", days)]``."""
        t = self.table(name, version)
        return None if t is None else self.arrow_dataset(t, name, partitions)

    def arrow_dataset(self, t: DeltaTable, name: str, partitions: list | None = None) -> pads.Dataset:
        """A snapshot ``t`` of table ``name`` as an Arrow dataset, read by Arrow's own file system
        (local or S3), never delta-rs's default Python file system: through that one an Arrow I/O
        thread could finish a read after the interpreter began to exit and abort the process
        ("terminate called without an active exception", delta-rs #2184). Seen on S3 (a writer
        exited -6 after committing, ~1 run in 10) and then on local disk too (the kill -9 test's
        last writer, ~1 CI run in 3), so both stores take this path."""
        fs = pafs.SubTreeFileSystem(self.fs_path(name), self.filesystem())
        return t.to_pyarrow_dataset(file_pruning_predicate=partitions, filesystem=fs)

    def files(self, name: str, version: int | None = None) -> list[str]:
        """The data files a committed version names (for audits; readers use ``dataset``)."""
        t = self.table(name, version)
        return [] if t is None else list(t.file_uris())

    def describe(self) -> dict[str, Any]:
        return {"root": self.root, "local": self.is_local,
                "options": {k: v for k, v in self.storage_options.items() if "SECRET" not in k.upper()}}


# ------------------------------------------------------------------------------------ table care


@dataclass(frozen=True)
class CarePolicy:
    """How the lake's tables are kept (``lake_care`` assets, docs/operations.md).

    - ``compact_min_age_hours``: a partition is compacted only when its newest file is at least this
      old, so a batch's files keep their names for a day after they land (the online join and the
      audit find a batch's rows by file name) and a partition still filling is left alone.
    - ``target_file_mb``: compaction's target file size.
    - ``vacuum_retention_hours``: removed (and orphan) files stay at least this long, so a reader
      pinned to a version of the last week still reads it; Delta's own default, a week.
    """

    compact_min_age_hours: float = 24.0
    target_file_mb: int = 128
    vacuum_retention_hours: int = 168


def compact(store: TableStore, name: str, policy: CarePolicy = CarePolicy(), now_ms: int | None = None) -> dict[str, Any]:
    """Rewrite the small files of a table's settled partitions into few large ones (Delta optimize:
    one commit, ``dataChange = false``, so readers and the change feed see no new rows)."""
    t = store.table(name)
    out = {"table": name, "partitions": 0, "files_removed": 0, "files_added": 0}
    if t is None:
        return out
    acts = store.add_actions(name)
    if acts.num_rows < 2:
        return out
    cutoff = (now_ms if now_ms is not None else int(time.time() * 1000)) - int(policy.compact_min_age_hours * 3_600_000)
    parts = t.metadata().partition_columns
    mtimes = acts.column("modification_time").to_pylist()
    mtimes = [m if isinstance(m, int) else int(m.timestamp() * 1000) for m in mtimes]  # ms, or a timestamp
    if not parts:
        if max(mtimes) > cutoff:
            return out
        metrics = t.optimize.compact(target_size=policy.target_file_mb << 20)
        out.update(partitions=1, files_removed=metrics["numFilesRemoved"], files_added=metrics["numFilesAdded"])
        return out
    col = parts[0]
    newest: dict[str, int] = {}
    count: dict[str, int] = {}
    for value, m in zip(acts.column(f"partition.{col}").to_pylist(), mtimes):
        v = str(value)
        newest[v] = max(newest.get(v, 0), m)
        count[v] = count.get(v, 0) + 1
    settled = sorted(v for v in newest if newest[v] <= cutoff and count[v] > 1)
    if not settled:
        return out
    metrics = t.optimize.compact(partition_filters=[(col, "in", settled)], target_size=policy.target_file_mb << 20)
    out.update(partitions=len(settled), files_removed=metrics["numFilesRemoved"], files_added=metrics["numFilesAdded"])
    return out


def vacuum(store: TableStore, name: str, policy: CarePolicy = CarePolicy(),
           keep_versions: list[int] | None = None) -> dict[str, Any]:
    """Delete the files no version within the retention needs: those compaction replaced, and
    orphans a dead writer left (``full``). ``keep_versions``: versions pinned by a reader (a
    model's card) whose files are kept whatever their age."""
    t = store.table(name)
    if t is None:
        return {"table": name, "files_deleted": 0}
    deleted = t.vacuum(retention_hours=policy.vacuum_retention_hours, dry_run=False,
                       enforce_retention_duration=True, full=True, keep_versions=keep_versions or None)
    return {"table": name, "files_deleted": len(deleted)}


def table_report(store: TableStore, name: str, now_ms: int | None = None) -> dict[str, Any]:
    """One table's size and freshness, from its Delta log (no data is read)."""
    t = store.table(name)
    if t is None:
        return {"table": name, "exists": False}
    acts = store.add_actions(name)
    sizes = acts.column("size_bytes").to_pylist() if acts.num_rows else []
    last = t.history(1)[0]
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    parts = t.metadata().partition_columns
    return {
        "table": name,
        "exists": True,
        "version": t.version(),
        "files": len(sizes),
        "rows": store.row_count(name),
        "mb": round(sum(sizes) / 1e6, 2),
        "small_files": sum(1 for s in sizes if s < 8 << 20),
        "partitions": len(set(acts.column(f"partition.{parts[0]}").to_pylist())) if parts and acts.num_rows else 0,
        "last_commit_ms": int(last["timestamp"]),
        "minutes_since_commit": round((now_ms - int(last["timestamp"])) / 60_000, 1),
        "last_operation": last.get("operation"),
    }
