"""Embedding tables: an id -> row map, row storage with Adagrad state, admission and expiry.

Both tables below share one API (batch in, batch out), so the torch module, the exporter and the
benchmark take either:

    rows = table.lookup(ids)                      # read-only; -1 = no row (reads zeros)
    rows = table.lookup_or_insert(ids, now_s)     # training path: admission, counts, times
    embeddings = table.gather(rows)               # float32[n, dim]
    table.apply_adagrad(unique_rows, grads, now_s)
    table.delete(ids); table.expire(now_s)

``CollisionlessEmbeddingTable`` gives every admitted id its own row (cuckoo map);
``HashingTrickEmbeddingTable`` (hashing_trick.py) shares rows by hash(id) mod M, the baseline.
Time is always an explicit ``now_s`` (int seconds) so behaviour is reproducible in tests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tiktok_pipelines.embedding.admission import AdmissionFilter, AdmitAll
from tiktok_pipelines.embedding.cuckoo import CuckooIdMap
from tiktok_pipelines.embedding.expiry import EvictionLog, expired_rows
from tiktok_pipelines.embedding.storage import TOUCHED, RowStorage, initial_embeddings_kernel


@dataclass(frozen=True)
class AdagradConfig:
    """torch.optim.Adagrad's parameters (lr_decay and weight_decay fixed at 0)."""

    lr: float = 0.05
    eps: float = 1e-10
    initial_accumulator_value: float = 0.0


@dataclass(frozen=True)
class TableConfig:
    dim: int
    ttl_seconds: int | None = None  # None: rows never expire
    init_scale: float = 0.01  # new rows ~ uniform(-init_scale, init_scale); 0 = zeros
    seed: int = 0  # initial vectors are a function of (id, seed)
    adagrad: AdagradConfig = field(default_factory=AdagradConfig)
    initial_capacity: int = 1024

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableConfig:
        d = dict(d)
        d["adagrad"] = AdagradConfig(**d.get("adagrad", {}))
        return cls(**d)


def _ids(ids: Any) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"ids must be 1-d, got shape {arr.shape}")
    if arr.dtype != np.int64:
        if not np.issubdtype(arr.dtype, np.integer) and arr.size:
            raise TypeError(f"ids must be integers, got {arr.dtype}")
        arr = arr.astype(np.int64)
    return np.ascontiguousarray(arr)


class RowTable:
    """What both tables share: row storage, Adagrad, export bookkeeping."""

    kind = "abstract"

    def __init__(self, config: TableConfig, *, name: str, storage: RowStorage) -> None:
        self.config = config
        self.name = name
        self.storage = storage
        self.eviction_log = EvictionLog()
        self.export_seq = 0  # sequence number of the last export (snapshot or delta) or load
        self._pending_deleted: list[np.ndarray] = []
        # Bumped whenever rows may be freed, so a caller holding rows from a forward pass can
        # tell that they went stale before its optimizer step.
        self.generation = 0

    @property
    def dim(self) -> int:
        return self.config.dim

    def __len__(self) -> int:
        return self.storage.num_live

    # --- reads --------------------------------------------------------------------------------
    def lookup(self, ids: Any) -> np.ndarray:
        raise NotImplementedError

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """embeddings float32[n, dim]; rows of -1 read zeros."""
        return self.storage.gather(rows)

    def embeddings_for(self, ids: Any) -> np.ndarray:
        """float32[n, dim] for ids int64[n]; ids without a row read zeros. No side effects."""
        return self.gather(self.lookup(ids))

    def initial_embeddings(self, ids: Any) -> np.ndarray:
        """The vector a row for each id starts from: float32[n, dim], a pure function of (id, seed)."""
        ids = _ids(ids)
        out = np.zeros((ids.shape[0], self.dim), dtype=np.float32)
        if self.config.init_scale != 0.0:
            initial_embeddings_kernel(ids, np.uint64(self.config.seed), float(self.config.init_scale), out)
        return out

    # --- training -----------------------------------------------------------------------------
    def apply_adagrad(self, rows: np.ndarray, grads: np.ndarray, now_s: int) -> None:
        """Adagrad on ``rows`` (unique, allocated) with grads float32[n, dim]; marks them touched."""
        opt = self.config.adagrad
        self.storage.apply_adagrad(rows, grads, lr=opt.lr, eps=opt.eps, now_s=now_s)

    # --- export bookkeeping -------------------------------------------------------------------
    def touched_rows(self) -> np.ndarray:
        return self.storage.touched_rows()

    def pending_deleted_ids(self) -> np.ndarray:
        """Ids deleted or evicted since the last export (an id may also be live again)."""
        if not self._pending_deleted:
            return np.empty(0, dtype=np.int64)
        return np.concatenate(self._pending_deleted)

    def row_state(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Copies of everything stored for ``rows``: ids, embeddings, accumulators, times, counts."""
        s = self.storage
        return {
            "id": s.row_ids[rows],
            "embedding": s.embeddings[rows],
            "adagrad_accumulator": s.accumulators[rows],
            "last_update_s": s.last_update_s[rows],
            "count": s.counts[rows],
        }

    def mark_exported(self, seq: int) -> None:
        """Called once an export is durably published: later deltas are relative to it."""
        self.storage.clear_touched()
        self._pending_deleted.clear()
        self.export_seq = int(seq)

    def memory_bytes(self) -> int:
        raise NotImplementedError

    def export_snapshot(self, directory: Any, *, now_s: int) -> dict[str, Any]:
        """Publish every live row (see export.py); later deltas are relative to it."""
        from tiktok_pipelines.embedding.export import export_snapshot

        return export_snapshot(self, directory, now_s=now_s)

    def export_delta(self, directory: Any, *, now_s: int, include_optimizer_state: bool = False) -> dict[str, Any]:
        """Publish rows touched and ids deleted since the last export (see export.py)."""
        from tiktok_pipelines.embedding.export import export_delta

        return export_delta(self, directory, now_s=now_s, include_optimizer_state=include_optimizer_state)


class CollisionlessEmbeddingTable(RowTable):
    """Every admitted int64 id owns one row; two distinct ids never share one (Monolith)."""

    kind = "collisionless"

    def __init__(self, config: TableConfig, *, name: str = "table", admission: AdmissionFilter | None = None,
                 map_seed: int = 0x5EED) -> None:
        super().__init__(config, name=name, storage=RowStorage(config.dim, config.initial_capacity))
        self.admission: AdmissionFilter = admission if admission is not None else AdmitAll()
        self.id_map = CuckooIdMap(config.initial_capacity, seed=map_seed)

    # --- reads --------------------------------------------------------------------------------
    def lookup(self, ids: Any) -> np.ndarray:
        """rows int64[n]; -1 for ids without a row. No side effects."""
        return self.id_map.lookup(_ids(ids))

    # --- training path ------------------------------------------------------------------------
    def lookup_or_insert(self, ids: Any, now_s: int) -> np.ndarray:
        """rows int64[n] for a training batch: ids without a row go through the admission filter
        and the admitted ones get a fresh row; every occurrence with a row bumps its count and
        last-update time. -1 = not admitted (reads zeros, gets no gradient)."""
        ids = _ids(ids)
        if isinstance(self.admission, AdmitAll):
            # Every id is admitted: one pass of the insert kernel (it looks each id up first)
            # instead of a lookup pass, a gather of the misses and an insert pass.
            rows, new_pos = self.id_map.assign(ids, np.ones(ids.shape[0], dtype=np.bool_), self.storage)
            self._init_rows(rows[new_pos], ids[new_pos], now_s)
            self.storage.touch(rows, now_s)
            return rows
        rows = self.id_map.lookup(ids)
        miss = np.flatnonzero(rows < 0)
        if miss.size:
            missing_ids = ids[miss]
            admit = self.admission.admit(missing_ids)
            if admit.any():
                miss_rows, new_pos = self.id_map.assign(missing_ids, admit, self.storage)
                self._init_rows(miss_rows[new_pos], missing_ids[new_pos], now_s)
                # An id is admitted for the whole batch: occurrences before its admitted one
                # looked up nothing, so look them up again.
                late = np.flatnonzero(miss_rows < 0)
                if late.size:
                    miss_rows[late] = self.id_map.lookup(missing_ids[late])
                rows[miss] = miss_rows
        self.storage.touch(rows, now_s)
        return rows

    def _init_rows(self, rows: np.ndarray, ids: np.ndarray, now_s: int) -> None:
        self.storage.init_rows(rows, ids, now_s, seed=self.config.seed, init_scale=self.config.init_scale,
                               accumulator_init=self.config.adagrad.initial_accumulator_value)

    # --- removal ------------------------------------------------------------------------------
    def delete(self, ids: Any) -> np.ndarray:
        """Remove ids (absent ones are ignored); returns the ids actually removed. Recorded for
        the next delta."""
        ids = _ids(ids)
        rows = self.id_map.delete(ids)
        removed = rows >= 0
        self.storage.free(rows[removed])
        removed_ids = ids[removed]
        if removed_ids.size:
            self._pending_deleted.append(removed_ids)
            self.generation += 1
        return removed_ids

    def expiring(self, now_s: int) -> int:
        """How many rows ``expire(now_s)`` would evict (nothing changes)."""
        ttl = self.config.ttl_seconds
        if ttl is None:
            return 0
        return int(expired_rows(self.storage.last_update_s[: self.storage.next_row],
                                self.storage.flags[: self.storage.next_row], now_s, ttl).size)

    def expire(self, now_s: int) -> np.ndarray:
        """Evict rows idle for more than ttl_seconds; returns their ids (recorded for the delta
        and in ``eviction_log``)."""
        ttl = self.config.ttl_seconds
        if ttl is None:
            return np.empty(0, dtype=np.int64)
        rows = expired_rows(self.storage.last_update_s[: self.storage.next_row],
                            self.storage.flags[: self.storage.next_row], now_s, ttl)
        evicted = self.delete(self.storage.row_ids[rows]) if rows.size else np.empty(0, dtype=np.int64)
        self.eviction_log.record(now_s, evicted.size)
        return evicted

    # --- bulk load (snapshots, deltas) --------------------------------------------------------
    def upsert_rows(self, ids: np.ndarray, embeddings: np.ndarray, now_s: int, *,
                    accumulators: np.ndarray | None = None, last_update_s: np.ndarray | None = None,
                    counts: np.ndarray | None = None) -> np.ndarray:
        """Write rows for ids (unique), creating them without admission; for loading exports.
        Missing optimizer state keeps its current value (initial value for new rows)."""
        ids = _ids(ids)
        rows, new_pos = self.id_map.assign(ids, np.ones(ids.shape[0], dtype=np.bool_), self.storage)
        self._init_rows(rows[new_pos], ids[new_pos], now_s)
        s = self.storage
        s.embeddings[rows] = embeddings
        if accumulators is not None:
            s.accumulators[rows] = accumulators
        if last_update_s is not None:
            s.last_update_s[rows] = last_update_s
        if counts is not None:
            s.counts[rows] = counts
        s.flags[rows] |= TOUCHED  # a written row belongs in the next delta (loads clear it after)
        return rows

    def live_rows(self) -> np.ndarray:
        return self.storage.live_rows()

    def memory_bytes(self) -> int:
        return self.storage.nbytes + self.id_map.nbytes

    def check_invariants(self) -> None:
        """For tests: the map and the storage agree, and no row is shared."""
        self.id_map.check_invariants()
        keys, rows = self.id_map.items()
        live = self.storage.live_rows()
        assert np.array_equal(np.sort(rows), live), "map rows != live storage rows"
        assert np.array_equal(self.storage.row_ids[rows], keys), "row_ids disagree with the map"
