"""Snapshots and deltas of an embedding table: Parquet + a JSON manifest, never pickle.

One export is one directory, published atomically by ``publish.publish_dir`` (written under a
temporary name, fsynced, renamed; the manifest is written last, so a directory with a manifest is
complete):

    manifest.json      format, kind (snapshot|delta), table name/kind, dim, seq, base_seq,
                       created_at_s, row counts, table + admission config, sha256 of each file
    rows.parquet       id int64, embedding fixed_size_list<float32>[dim]
                       (+ adagrad_accumulator fixed_size_list<float32>[dim], last_update_s int64,
                        count uint32 — always in snapshots, in deltas only on request)
    deleted.parquet    id int64 (deltas only): deleted or evicted since the previous export

A snapshot carries every live row; a delta the rows touched since the previous export and the
ids deleted since. A reader = the latest snapshot + every later delta in ``seq`` order, each
delta's ``base_seq`` equal to the ``seq`` before it; deletions apply before upserts. Serving
deltas leave the optimizer state out (Monolith syncs sparse parameters often, and the state is
only needed to resume training, which reads snapshots).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tiktok_pipelines.embedding.table import (
    CollisionlessEmbeddingTable,
    RowTable,
    TableConfig,
)
from tiktok_pipelines.publish import publish_dir, sha256_file

FORMAT = "tiktok_pipelines.embedding/v1"
MANIFEST = "manifest.json"
ROWS_FILE = "rows.parquet"
DELETED_FILE = "deleted.parquet"
_ROW_GROUP_ROWS = 1 << 20


@dataclass
class ExportData:
    manifest: dict[str, Any]
    ids: np.ndarray  # int64[n]
    embeddings: np.ndarray  # float32[n, dim]
    accumulators: np.ndarray | None  # float32[n, dim]
    last_update_s: np.ndarray | None  # int64[n]
    counts: np.ndarray | None  # uint32[n]
    deleted_ids: np.ndarray  # int64[m]


# --- writing ----------------------------------------------------------------------------------
def export_snapshot(table: RowTable, directory: str | os.PathLike, *, now_s: int) -> dict[str, Any]:
    """Expire idle rows, then publish every live row with its optimizer state."""
    table.expire(now_s)
    rows = table.live_rows()
    return _publish(table, Path(directory), kind="snapshot", rows=rows, deleted=None,
                    include_optimizer_state=True, now_s=now_s)


def export_delta(table: RowTable, directory: str | os.PathLike, *, now_s: int,
                 include_optimizer_state: bool = False) -> dict[str, Any]:
    """Expire idle rows, then publish rows touched and ids deleted since the last export."""
    if table.export_seq == 0:
        raise ValueError(f"table {table.name!r} has no snapshot to base a delta on; export_snapshot first")
    table.expire(now_s)
    return _publish(table, Path(directory), kind="delta", rows=table.touched_rows(),
                    deleted=table.pending_deleted_ids(), include_optimizer_state=include_optimizer_state,
                    now_s=now_s)


def _fixed_size_list(values: np.ndarray) -> pa.FixedSizeListArray:
    n, dim = values.shape
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(values).reshape(n * dim)), dim)


def _publish(table: RowTable, directory: Path, *, kind: str, rows: np.ndarray, deleted: np.ndarray | None,
             include_optimizer_state: bool, now_s: int) -> dict[str, Any]:
    seq = table.export_seq + 1
    files: dict[str, dict[str, Any]] = {}  # filled as the files are written
    manifest = {
        "format": FORMAT,
        "kind": kind,
        "table": table.name,
        "table_kind": table.kind,
        "dim": table.dim,
        "seq": seq,
        "base_seq": table.export_seq if kind == "delta" else None,
        "created_at_s": int(now_s),
        "num_rows": int(rows.size),
        "num_deleted": int(deleted.size) if deleted is not None else 0,
        "includes_optimizer_state": include_optimizer_state,
        "table_config": table.config.to_dict(),
        "admission": table.admission.config() if hasattr(table, "admission") else None,
        "evicted_total": table.eviction_log.total_evicted,
        "files": files,
    }
    if directory.exists():
        raise FileExistsError(f"{directory} exists; exports are immutable, pick a new directory")
    with publish_dir(directory, manifest_name=MANIFEST, manifest=lambda _: manifest) as tmp:
        state = table.row_state(rows)
        columns = {"id": pa.array(state["id"]), "embedding": _fixed_size_list(state["embedding"])}
        if include_optimizer_state:
            columns["adagrad_accumulator"] = _fixed_size_list(state["adagrad_accumulator"])
            columns["last_update_s"] = pa.array(state["last_update_s"])
            columns["count"] = pa.array(state["count"])
        files[ROWS_FILE] = _write_parquet(pa.table(columns), tmp / ROWS_FILE)
        if deleted is not None:
            files[DELETED_FILE] = _write_parquet(pa.table({"id": pa.array(deleted.astype(np.int64))}),
                                                 tmp / DELETED_FILE)
    table.mark_exported(seq)
    return manifest


def _write_parquet(data: pa.Table, path: Path) -> dict[str, Any]:
    # Embeddings are incompressible floats: no dictionary, a fast codec that skips them cheaply.
    # (publish_dir fsyncs the files before the folder is renamed into place.)
    pq.write_table(data, path, row_group_size=_ROW_GROUP_ROWS, compression="snappy", use_dictionary=False)
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size, "rows": data.num_rows}


# --- reading ----------------------------------------------------------------------------------
def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    manifest = json.loads((Path(directory) / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{directory}: unknown export format {manifest.get('format')!r}")
    return manifest


def read_export(directory: str | os.PathLike, *, verify: bool = True) -> ExportData:
    """Arrays of one export (for a model server that keeps its own index, or for load/apply)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if verify:
        for name, meta in manifest["files"].items():
            if sha256_file(directory / name) != meta["sha256"]:
                raise ValueError(f"{directory / name}: checksum mismatch")
    dim = manifest["dim"]
    rows = pq.read_table(directory / ROWS_FILE)

    def matrix(column: str) -> np.ndarray:
        flat = rows[column].combine_chunks().flatten().to_numpy(zero_copy_only=False)
        return np.asarray(flat, dtype=np.float32).reshape(-1, dim)

    has_state = manifest["includes_optimizer_state"]
    deleted = np.empty(0, dtype=np.int64)
    if DELETED_FILE in manifest["files"]:
        deleted = pq.read_table(directory / DELETED_FILE)["id"].to_numpy().astype(np.int64)
    return ExportData(
        manifest=manifest,
        ids=rows["id"].to_numpy().astype(np.int64),
        embeddings=matrix("embedding"),
        accumulators=matrix("adagrad_accumulator") if has_state else None,
        last_update_s=rows["last_update_s"].to_numpy().astype(np.int64) if has_state else None,
        counts=rows["count"].to_numpy().astype(np.uint32) if has_state else None,
        deleted_ids=deleted,
    )


def load_snapshot(directory: str | os.PathLike, *, admission=None) -> CollisionlessEmbeddingTable:
    """A collisionless table equal to the one that wrote the snapshot (rows, optimizer state,
    times, counts; the admission filter's own state is not exported — pass a fresh one)."""
    data = read_export(directory)
    m = data.manifest
    if m["kind"] != "snapshot":
        raise ValueError(f"{directory} is a {m['kind']}, not a snapshot")
    if m["table_kind"] != CollisionlessEmbeddingTable.kind:
        raise ValueError(f"load_snapshot builds collisionless tables; {directory} holds {m['table_kind']}")
    config = TableConfig.from_dict({**m["table_config"], "initial_capacity": max(len(data.ids), 1)})
    table = CollisionlessEmbeddingTable(config, name=m["table"], admission=admission)
    table.upsert_rows(data.ids, data.embeddings, m["created_at_s"], accumulators=data.accumulators,
                      last_update_s=data.last_update_s, counts=data.counts)
    table.mark_exported(m["seq"])
    return table


def apply_delta(table: CollisionlessEmbeddingTable, directory: str | os.PathLike) -> None:
    """Bring ``table`` (loaded from the snapshot or delta with seq = this delta's base_seq) forward."""
    data = read_export(directory)
    m = data.manifest
    if m["kind"] != "delta":
        raise ValueError(f"{directory} is a {m['kind']}, not a delta")
    if m["base_seq"] != table.export_seq:
        raise ValueError(f"delta {directory} follows seq {m['base_seq']}, table is at seq {table.export_seq}")
    # Deletions first: an id evicted and re-created since the last export is in both lists.
    if data.deleted_ids.size:
        table.delete(data.deleted_ids)
    table.upsert_rows(data.ids, data.embeddings, m["created_at_s"], accumulators=data.accumulators,
                      last_update_s=data.last_update_s, counts=data.counts)
    table.mark_exported(m["seq"])
