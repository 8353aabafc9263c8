"""The torch ranker: a DeepFM whose id embeddings and id biases live in collisionless tables.

Fields: the id slots (user, video, creator: one vector each from a collisionless table) and the
dense features (each standardised value x_j scales a learned vector w_j, as DeepFM embeds numeric
fields). With e_f the fields' vectors:

    logit = b + b_user + b_video + b_creator            first order: per-id biases (own tables,
          + <a, x>                                       dim 1) and a linear term on the features
          + sum_{f<g} <e_f, e_g>                         FM: every pairwise interaction
          + MLP([e_user, e_video, e_creator, x])         deep part
    P(engaged) = sigmoid(logit)

Why this and not the former two-tower model: the biases carry what popularity and per-user
tendency explain (on MovieLens most of the signal), and the FM and MLP let ids interact with the
served features. The two towers are still inside it: <e_user, e_video + e_creator> is part of the
FM sum, so the model server's candidate retrieval (one user vector against every video vector)
ranks by the same terms the full model scores; the ranking score is the full model's.

Training: ``fit`` trains to convergence (epochs chosen by early stopping on a time-later slice
of the window, then a refit on the whole window; ``training.schedule``). ``partial_fit`` is one
pass in time order: the online micro-batch path. Both run ``step`` (DESIGN.md decision 3): sparse
Adagrad on the rows a batch touched, Adam on the dense weights.

``predict`` is the probability under the training distribution; ``predict_served(table, r)``
applies the log-odds correction for negatives kept at rate r (what is served and logged).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from torch import nn

from tiktok_pipelines.embedding.admission import CountFilter
from tiktok_pipelines.embedding.export import load_snapshot
from tiktok_pipelines.embedding.table import AdagradConfig, TableConfig
from tiktok_pipelines.embedding.torch_module import MonolithEmbeddings, SlotSpec, train_step
from tiktok_pipelines.training.evaluate import corrected
from tiktok_pipelines.training.features import ID_SLOTS, NUMERIC_NAMES, ids, labels, numeric_matrix
from tiktok_pipelines.training.schedule import EpochReport, fit_epochs, time_ordered

TABLES_DIR = "tables"
DENSE_FILE = "dense.npz"
META_FILE = "torch_ranker.json"
BIAS_SUFFIX = "_bias"  # the first-order table of slot s is s + BIAS_SUFFIX (dim 1)
FORMAT = 2  # 1: the former two-tower model (no bias tables, a "head" MLP); not loadable as this one


class IncompatibleModel(ValueError):
    """A saved or published model of another format (e.g. the former two-tower ranker)."""


def bias_slot(slot: str) -> str:
    return slot + BIAS_SUFFIX


def ranker_slots(dim: int = 16, *, ttl_seconds: int | None = 30 * 86400, lr: float = 0.05,
                 init_scale: float = 0.05, admit_min_count: int | None = None,
                 admission_counters: int = 1 << 18) -> dict[str, SlotSpec]:
    """A vector table and a bias table per id slot, each collisionless with sparse Adagrad.
    Biases start at zero (an unseen id adds nothing); vectors start small and random (an FM of
    all-zero vectors has zero gradient).

    ``admit_min_count``: Monolith's count filter; an id earns its rows at its ``admit_min_count``-th
    training occurrence (until then it reads zeros: the model's prior). The vector and the bias
    table of a slot each get a filter with the same seed and size, so they see the same ids in
    the same batches and admit them together. ``admission_counters`` sizes each filter's sketch
    (2 bytes a counter; ~4x the distinct ids waiting for admission keeps early admissions < 1%)."""
    def factory(k: int):
        if admit_min_count is None:
            return None
        return lambda: CountFilter(admit_min_count, num_counters=admission_counters, seed=0xC0FFEE + k)

    slots = {}
    for k, slot in enumerate(ID_SLOTS):
        ada = AdagradConfig(lr=lr)
        slots[slot] = SlotSpec(TableConfig(dim=dim, ttl_seconds=ttl_seconds, seed=k + 1, init_scale=init_scale,
                                           adagrad=ada), admission_factory=factory(k))
        slots[bias_slot(slot)] = SlotSpec(TableConfig(dim=1, ttl_seconds=ttl_seconds, seed=k + 11, init_scale=0.0,
                                                      adagrad=ada), admission_factory=factory(k))
    return slots


class _Dense(nn.Module):
    """Every dense parameter: global bias, linear term, numeric-field vectors, the deep MLP."""

    def __init__(self, n_numeric: int, n_id_slots: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))
        self.linear = nn.Linear(n_numeric, 1, bias=False)
        nn.init.zeros_(self.linear.weight)
        self.field = nn.Parameter(torch.randn(n_numeric, dim) * 0.01)
        self.mlp = nn.Sequential(nn.Linear(n_id_slots * dim + n_numeric, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, id_vectors: list[torch.Tensor], id_biases: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        fields = torch.stack(id_vectors + list((x.unsqueeze(2) * self.field).unbind(1)), dim=1)  # [B, F, d]
        fm = 0.5 * (fields.sum(1).pow(2) - fields.pow(2).sum(1)).sum(1)
        first = self.bias + torch.cat(id_biases, dim=1).sum(1) + self.linear(x).squeeze(1)
        deep = self.mlp(torch.cat(id_vectors + [x], dim=1)).squeeze(1)
        return first + fm + deep


class MonolithRanker:
    def __init__(self, *, dim: int = 16, hidden: int = 64, lr_dense: float = 1e-3, lr_sparse: float = 0.05,
                 seed: int = 0, slots: dict[str, SlotSpec] | None = None, max_epochs: int = 20,
                 ttl_seconds: int | None = 30 * 86400, admit_min_count: int | None = None) -> None:
        self.dim, self.hidden, self.lr_dense, self.seed, self.max_epochs = dim, hidden, lr_dense, seed, max_epochs
        self._slot_specs = slots or ranker_slots(dim, ttl_seconds=ttl_seconds, lr=lr_sparse,
                                                 admit_min_count=admit_min_count)
        self._reset()
        self.mean: np.ndarray | None = None  # dense standardisation, fitted on the training window
        self.std: np.ndarray | None = None
        self.examples_seen = 0
        self.fit_report: EpochReport | None = None

    def _reset(self) -> None:
        """Fresh parameters from the seed: at construction and at the start of every fit."""
        torch.manual_seed(self.seed)
        self.embeddings = MonolithEmbeddings(self._slot_specs)
        self.dense = _Dense(len(NUMERIC_NAMES), len(ID_SLOTS), self.dim, self.hidden)
        self.optimizer = torch.optim.Adam(self.dense.parameters(), lr=self.lr_dense)
        self.examples_seen = 0

    # --- features -----------------------------------------------------------------------------
    def fit_standardisation(self, table: pa.Table) -> None:
        """Dense features are standardised with statistics of a whole training window (one
        batch is too narrow: an hour of data has one hour_of_day), then kept for online steps."""
        x = numeric_matrix(table)
        self.mean, self.std = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-3)

    def _x(self, table: pa.Table) -> torch.Tensor:
        if self.mean is None:
            self.fit_standardisation(table)
        return torch.from_numpy(((numeric_matrix(table) - self.mean) / self.std).astype(np.float32))

    def _ids(self, table: pa.Table) -> dict[str, np.ndarray]:
        raw = ids(table)
        return {**raw, **{bias_slot(s): raw[s] for s in ID_SLOTS}}

    def _logits(self, pooled: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return self.dense([pooled[s] for s in ID_SLOTS], [pooled[bias_slot(s)] for s in ID_SLOTS], x)

    # --- the one training step ----------------------------------------------------------------
    def step(self, batch: pa.Table, now_s: int) -> float:
        """One optimisation step on a batch of examples; returns its loss."""
        self.dense.train()
        x = self._x(batch)
        y = torch.from_numpy(labels(batch))

        def loss(pooled: dict[str, torch.Tensor]) -> torch.Tensor:
            return F.binary_cross_entropy_with_logits(self._logits(pooled, x), y)

        value = train_step(self.embeddings, loss, self._ids(batch), now_s=now_s, dense_optimizer=self.optimizer)
        self.examples_seen += batch.num_rows
        return value

    def _pass(self, table: pa.Table, batch_size: int, order: np.ndarray | None = None) -> list[float]:
        if order is not None:
            table = table.take(pa.array(order))
        ts = table.column("ts_ms").to_numpy()
        losses = []
        for start in range(0, table.num_rows, batch_size):
            batch = table.slice(start, batch_size)
            now_s = int(ts[start:start + batch_size].max() // 1000)
            losses.append(self.step(batch, now_s))
        return losses

    def partial_fit(self, table: pa.Table, *, batch_size: int = 512) -> list[float]:
        """One pass over the examples in time order, as the stream delivered them (online)."""
        if self.mean is None:
            self.fit_standardisation(table)
        return self._pass(time_ordered(table), batch_size)

    def fit(self, table: pa.Table, *, batch_size: int = 512, epochs: int | None = None) -> EpochReport:
        """Batch training from fresh parameters: ``epochs`` shuffled passes, or (None) as many as
        early stopping on the time-later tenth of the window chooses, then refitted on all of it."""
        def start(train: pa.Table) -> None:
            self._reset()
            self.fit_standardisation(train)

        def epoch(train: pa.Table, rng: np.random.Generator) -> None:
            self._pass(train, batch_size, rng.permutation(train.num_rows))

        self.fit_report = fit_epochs(table, start=start, epoch=epoch, predict=self.predict, epochs=epochs,
                                     max_epochs=self.max_epochs, seed=self.seed)
        return self.fit_report

    @torch.no_grad()
    def predict(self, table: pa.Table) -> np.ndarray:
        """P(engaged) under the training distribution; unknown ids read zeros (nothing inserted)."""
        self.embeddings.eval()
        self.dense.eval()
        try:
            pooled = self.embeddings(self._ids(table))
            return torch.sigmoid(self._logits(pooled, self._x(table))).numpy().astype(np.float64)
        finally:
            self.embeddings.train()

    def predict_served(self, table: pa.Table, negative_rate: float) -> np.ndarray:
        """The calibrated probability a server reports: log-odds corrected for downsampling."""
        return corrected(self.predict(table), negative_rate)

    # --- dense state (published for serving; no pickle) --------------------------------------
    def dense_state(self) -> dict[str, np.ndarray]:
        out = {f"dense.{k}": v.detach().numpy().copy() for k, v in self.dense.state_dict().items()}
        out.update(dense_mean=np.asarray(self.mean, np.float32), dense_std=np.asarray(self.std, np.float32))
        return out

    def load_dense_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.dense.load_state_dict({k[len("dense."):]: torch.from_numpy(np.array(v))
                                    for k, v in arrays.items() if k.startswith("dense.")})
        self.mean = np.asarray(arrays["dense_mean"], np.float32)
        self.std = np.asarray(arrays["dense_std"], np.float32)

    @staticmethod
    def shape_of(arrays: dict[str, np.ndarray]) -> tuple[int, int]:
        """(dim, hidden) of the dense state ``arrays``."""
        if "dense.field" not in arrays:
            raise IncompatibleModel(f"dense arrays {sorted(arrays)[:4]}... are not a format-{FORMAT} ranker's")
        return int(arrays["dense.field"].shape[1]), int(arrays["dense.mlp.0.weight"].shape[0])

    # --- persistence (no pickle) ----------------------------------------------------------------
    def save(self, directory: Path, *, now_s: int) -> None:
        self.embeddings.export_snapshot(directory / TABLES_DIR, now_s=now_s)
        np.savez(directory / DENSE_FILE, **self.dense_state())
        meta = {"format": FORMAT, "dim": self.dim, "hidden": self.hidden, "numeric_features": list(NUMERIC_NAMES),
                "examples_seen": self.examples_seen,
                "fit": self.fit_report.to_json() if self.fit_report else None}
        (directory / META_FILE).write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: Path) -> MonolithRanker:
        meta = json.loads((directory / META_FILE).read_text())
        if meta.get("format", 1) != FORMAT:
            raise IncompatibleModel(f"{directory} holds a format-{meta.get('format', 1)} torch ranker, "
                                    f"this code reads format {FORMAT}")
        model = cls(dim=meta["dim"], hidden=meta["hidden"])
        model.embeddings.use_tables({slot: load_snapshot(directory / TABLES_DIR / slot)
                                     for slot in model.embeddings.tables})
        with np.load(directory / DENSE_FILE, allow_pickle=False) as z:
            model.load_dense_state({k: z[k] for k in z.files})
        model.examples_seen = meta["examples_seen"]
        return model
