"""Torch front-end: one embedding table per feature slot, raw int64 ids in, pooled vectors out.

The tables live outside autograd (numpy rows behind a cuckoo map). A forward pass gathers the
batch's distinct rows into a small leaf tensor ``weight[n_distinct, dim]``, pools it with torch's
own ``embedding``/``embedding_bag`` kernels (so forward and backward are torch's), and remembers
which rows it used. ``apply_gradients(now_s)`` then runs Adagrad on exactly those rows — the
sparse update: cost proportional to the batch, not the table. The update is
``torch.optim.adagrad.adagrad`` itself (the functional form behind ``torch.optim.Adagrad``) on
the gathered rows and their accumulators, so training matches a dense ``nn.EmbeddingBag`` +
``torch.optim.Adagrad`` to the bit: for a row outside the batch torch's update is an exact no-op.

One step serves both training paths (DESIGN decision 3): the daily batch retrain and the online
micro-batch update both call ``train_step`` (or forward / backward / ``apply_gradients``); only
the data window and how often ``export_delta`` runs differ.

    emb = MonolithEmbeddings(default_slots(dim=16))
    pooled = emb({"user_id": u, "video_id": v, "creator_id": c, "hashtag_ids": h},
                 offsets={"hashtag_ids": h_offsets}, now_s=t)      # {slot: [batch, dim]}
    loss = head(pooled); loss.backward(); dense_opt.step(); emb.apply_gradients(now_s=t)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.adagrad import adagrad as functional_adagrad

from tiktok_pipelines.embedding.admission import AdmissionFilter
from tiktok_pipelines.embedding.export import export_delta, export_snapshot
from tiktok_pipelines.embedding.hashing_trick import HashingTrickEmbeddingTable
from tiktok_pipelines.embedding.table import (
    CollisionlessEmbeddingTable,
    RowTable,
    TableConfig,
)

Pooling = Literal["none", "sum", "mean"]


@dataclass
class SlotSpec:
    """One feature slot. ``pooling="none"``: one id per example; "sum"/"mean": a bag of ids per
    example given by offsets (torch.nn.EmbeddingBag's convention). ``hashing_trick_rows`` set:
    use the hashing-trick baseline with that many rows instead of the collisionless table."""

    table: TableConfig
    pooling: Pooling = "none"
    admission: AdmissionFilter | None = None
    hashing_trick_rows: int | None = None
    # A fresh filter per table built (preferred to ``admission``, one instance): a model that
    # rebuilds its tables (a refit) must not inherit the counts of the tables it threw away.
    admission_factory: Callable[[], AdmissionFilter] | None = None

    def build(self, name: str) -> RowTable:
        if self.hashing_trick_rows is not None:
            return HashingTrickEmbeddingTable(self.table, self.hashing_trick_rows, name=name)
        admission = self.admission_factory() if self.admission_factory is not None else self.admission
        return CollisionlessEmbeddingTable(self.table, name=name, admission=admission)


def default_slots(dim: int = 16, *, ttl_seconds: int | None = 30 * 86400, lr: float = 0.05) -> dict[str, SlotSpec]:
    """The short-video slots: user, video, creator (one id each) and hashtags (a mean-pooled bag)."""
    from tiktok_pipelines.embedding.table import AdagradConfig

    def cfg(seed: int) -> TableConfig:
        return TableConfig(dim=dim, ttl_seconds=ttl_seconds, seed=seed, adagrad=AdagradConfig(lr=lr))

    return {
        "user_id": SlotSpec(cfg(1)),
        "video_id": SlotSpec(cfg(2)),
        "creator_id": SlotSpec(cfg(3)),
        "hashtag_ids": SlotSpec(cfg(4), pooling="mean"),
    }


@dataclass
class _Pending:
    rows: np.ndarray  # int64[k] distinct rows used by a forward (-1 = not admitted)
    weight: torch.Tensor  # leaf float32[k, dim]
    generation: int


@dataclass
class _SlotState:
    spec: SlotSpec
    table: RowTable
    pending: list[_Pending] = field(default_factory=list)


def _distinct(ids: np.ndarray, rows: np.ndarray, table: RowTable) -> tuple[np.ndarray, np.ndarray]:
    """(rows of the leaf, local index per id). The leaf is [n_distinct, dim] and torch's backward
    sums the gradient of repeated ids into one leaf row, as it would for a full-size weight.

    Collisionless tables: one leaf row per distinct id, in id order. The local index is then an
    order-preserving relabelling of the raw ids, so torch's backward (which sorts indices)
    accumulates repeated ids in the same order as a dense nn.EmbeddingBag indexed by raw id —
    the sums agree to the bit, not just to rounding. Not-admitted ids keep their own zero row.
    Hashing trick: one leaf row per distinct shared row (ids collide by design).
    """
    if table.kind == "collisionless":
        _, first, local = np.unique(ids, return_index=True, return_inverse=True)
        return rows[first], local
    return np.unique(rows, return_inverse=True)


def _as_numpy_ids(ids: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    return np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)


class MonolithEmbeddings(nn.Module):
    """Embedding tables per slot with sparse Adagrad. Holds no nn.Parameters: dense optimizers
    never see (or densely update) the tables."""

    def __init__(self, slots: Mapping[str, SlotSpec]) -> None:
        super().__init__()
        self._slots = {name: _SlotState(spec, spec.build(name)) for name, spec in slots.items()}

    @property
    def tables(self) -> dict[str, RowTable]:
        return {name: s.table for name, s in self._slots.items()}

    def use_tables(self, tables: Mapping[str, RowTable]) -> None:
        """Replace every slot's table (e.g. with tables loaded from a snapshot or the serving
        directory); pending rows of the old tables are dropped."""
        if set(tables) != set(self._slots):
            raise KeyError(f"tables for {sorted(tables)} do not match the slots {sorted(self._slots)}")
        for name, state in self._slots.items():
            state.table = tables[name]
            state.pending.clear()

    def forward(self, ids: Mapping[str, torch.Tensor | np.ndarray],
                offsets: Mapping[str, torch.Tensor | np.ndarray] | None = None, *,
                now_s: int | None = None) -> dict[str, torch.Tensor]:
        """{slot: float32[batch, dim]}. Training (``self.training`` and grad enabled) inserts
        admitted new ids, counts occurrences at ``now_s`` and records rows for
        ``apply_gradients``; otherwise a pure lookup (unknown ids read zeros)."""
        training = self.training and torch.is_grad_enabled()
        if training and now_s is None:
            raise ValueError("training forward needs now_s (seconds) for admission counts and expiry")
        offsets = offsets or {}
        out: dict[str, torch.Tensor] = {}
        for name, state in self._slots.items():
            if name not in ids:
                raise KeyError(f"missing ids for slot {name!r}")
            raw = _as_numpy_ids(ids[name])
            table = state.table
            rows = table.lookup_or_insert(raw, now_s) if training else table.lookup(raw)
            distinct_rows, local = _distinct(raw, rows, table)
            weight = torch.from_numpy(table.gather(distinct_rows))  # row -1 gathers zeros
            if training:
                weight.requires_grad_(True)
                state.pending.append(_Pending(distinct_rows, weight, table.generation))
            local_ids = torch.from_numpy(local.reshape(-1).astype(np.int64))
            if state.spec.pooling == "none":
                out[name] = F.embedding(local_ids, weight)
            else:
                if name not in offsets:
                    raise KeyError(f"slot {name!r} pools bags and needs offsets")
                bag_offsets = torch.as_tensor(_as_numpy_ids(offsets[name]))
                out[name] = F.embedding_bag(local_ids, weight, bag_offsets, mode=state.spec.pooling)
        return out

    def apply_gradients(self, now_s: int) -> int:
        """Adagrad on the rows used since the last call, from their leaves' .grad; clears them.
        Returns the number of rows updated."""
        updated = 0
        for name, state in self._slots.items():
            parts = [p for p in state.pending if p.weight.grad is not None]
            if any(p.generation != state.table.generation for p in parts):
                state.pending.clear()
                raise RuntimeError(f"slot {name!r}: rows were deleted/expired between forward and step")
            if len(parts) == 1:
                rows, grads = parts[0].rows, parts[0].weight.grad.numpy()
            elif parts:
                # Several forwards before one step: sum gradients per row first, as torch's
                # accumulation into one weight.grad would, then apply one update per row.
                all_rows = np.concatenate([p.rows for p in parts])
                rows, inverse = np.unique(all_rows, return_inverse=True)
                summed = torch.zeros((rows.size, state.table.dim), dtype=torch.float32)
                summed.index_add_(0, torch.from_numpy(inverse.reshape(-1)),
                                  torch.cat([p.weight.grad for p in parts]))
                grads = summed.numpy()
            else:
                state.pending.clear()
                continue
            keep = rows >= 0  # not-admitted ids: their zero vector has no row to update
            _adagrad_rows(state.table, rows[keep], torch.from_numpy(np.ascontiguousarray(grads[keep])), now_s)
            updated += int(keep.sum())
            state.pending.clear()
        return updated

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget rows recorded by forwards not followed by apply_gradients."""
        super().zero_grad(set_to_none)
        for state in self._slots.values():
            state.pending.clear()

    def expire(self, now_s: int) -> dict[str, np.ndarray]:
        """Evict idle rows in every table (between steps, never inside one)."""
        return {name: s.table.expire(now_s) for name, s in self._slots.items()}

    def export_snapshot(self, directory: str | os.PathLike, *, now_s: int) -> dict[str, dict[str, Any]]:
        """One atomically published export per slot, under ``directory/<slot>``; returns manifests.
        The caller writes its own model-level manifest last."""
        return {name: export_snapshot(s.table, Path(directory) / name, now_s=now_s)
                for name, s in self._slots.items()}

    def export_delta(self, directory: str | os.PathLike, *, now_s: int,
                     include_optimizer_state: bool = False) -> dict[str, dict[str, Any]]:
        return {name: export_delta(s.table, Path(directory) / name, now_s=now_s,
                                   include_optimizer_state=include_optimizer_state)
                for name, s in self._slots.items()}


def _adagrad_rows(table: RowTable, rows: np.ndarray, grads: torch.Tensor, now_s: int) -> None:
    """torch's Adagrad update on the given rows only (rows unique, allocated)."""
    if rows.size == 0:
        return
    opt = table.config.adagrad
    storage = table.storage
    params = torch.from_numpy(storage.embeddings[rows])  # fancy indexing copies: safe to modify
    state_sums = torch.from_numpy(storage.accumulators[rows])
    functional_adagrad([params], [grads], [state_sums], [torch.tensor(1.0)], foreach=False, lr=opt.lr,
                       weight_decay=0.0, lr_decay=0.0, eps=opt.eps, maximize=False)
    storage.write_rows(rows, params.numpy(), state_sums.numpy(), now_s)


def train_step(embeddings: MonolithEmbeddings, head: Callable[[dict[str, torch.Tensor]], torch.Tensor],
               ids: Mapping[str, torch.Tensor | np.ndarray], *, now_s: int,
               offsets: Mapping[str, torch.Tensor | np.ndarray] | None = None,
               dense_optimizer: torch.optim.Optimizer | None = None) -> float:
    """The one training step for the daily batch and the online micro-batches: forward, loss from
    ``head`` (pooled embeddings -> scalar loss), backward, dense step, sparse Adagrad step."""
    embeddings.train()
    if dense_optimizer is not None:
        dense_optimizer.zero_grad()
    loss = head(embeddings(ids, offsets, now_s=now_s))
    loss.backward()
    if dense_optimizer is not None:
        dense_optimizer.step()
    embeddings.apply_gradients(now_s)
    return float(loss.detach())
