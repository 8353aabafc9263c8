"""The baselines every experiment reports beside the models (DESIGN.md decision 10).

- ``PopularityBaseline``: the item's positive rate in the training data, smoothed towards the
  global rate with a Beta prior of ``prior_strength`` pseudo-examples (an item seen twice is not
  ranked first because both views were positive). Counts are weighted by 1 / sample_rate, so the
  rate is that of the full distribution, not of the negative-downsampled one.
- ``BiasedMF``: logistic matrix factorisation with a global, a user and an item bias,
  logit = b + b_u + b_i + <p_u, q_i>, plain torch embeddings and Adam, L2 on the rows a batch
  uses. Trained to convergence by early stopping on a time-later validation slice (``fit_epochs``
  in ``training.schedule``), then refitted on all training data for the chosen number of epochs.
  Unknown users and items read the padding row (zero): the score falls back to the biases known.

Both return the probability under the training distribution, as the torch ranker does, so every
arm is corrected and scored the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from torch import nn

from tiktok_pipelines.training.features import labels
from tiktok_pipelines.training.schedule import EpochReport, fit_epochs


class PopularityBaseline:
    def __init__(self, prior_strength: float = 10.0) -> None:
        self.prior_strength = prior_strength
        self.items: np.ndarray = np.zeros(0, np.int64)
        self.rates: np.ndarray = np.zeros(0)
        self.global_rate = 0.5

    def fit(self, table: pa.Table) -> PopularityBaseline:
        items = table.column("video_id").to_numpy().astype(np.int64)
        y = labels(table).astype(np.float64)
        w = 1.0 / table.column("sample_rate").to_numpy().astype(np.float64)
        self.global_rate = float(np.average(y, weights=w))
        self.items, inverse = np.unique(items, return_inverse=True)
        positives = np.bincount(inverse, weights=w * y, minlength=self.items.size)
        seen = np.bincount(inverse, weights=w, minlength=self.items.size)
        self.rates = (positives + self.prior_strength * self.global_rate) / (seen + self.prior_strength)
        return self

    def predict_full(self, table: pa.Table) -> np.ndarray:
        """P(engaged) under the full distribution (the rate was counted with weights)."""
        items = table.column("video_id").to_numpy().astype(np.int64)
        pos = np.clip(np.searchsorted(self.items, items), 0, max(self.items.size - 1, 0))
        known = self.items.size > 0
        hit = (self.items[pos] == items) if known else np.zeros(items.size, bool)
        return np.where(hit, self.rates[pos] if known else 0.0, self.global_rate)


class _IdIndex:
    """Raw int64 ids -> 1..n (0 = unseen: the padding row, never trained)."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = np.unique(ids)

    def __call__(self, ids: np.ndarray) -> torch.Tensor:
        if self.ids.size == 0:
            return torch.zeros(ids.size, dtype=torch.int64)
        pos = np.clip(np.searchsorted(self.ids, ids), 0, self.ids.size - 1)
        return torch.from_numpy(np.where(self.ids[pos] == ids, pos + 1, 0).astype(np.int64))


class _MF(nn.Module):
    def __init__(self, users: int, items: int, dim: int) -> None:
        super().__init__()
        self.p = nn.Embedding(users + 1, dim, padding_idx=0)
        self.q = nn.Embedding(items + 1, dim, padding_idx=0)
        self.bu = nn.Embedding(users + 1, 1, padding_idx=0)
        self.bi = nn.Embedding(items + 1, 1, padding_idx=0)
        self.b = nn.Parameter(torch.zeros(1))
        for e in (self.p, self.q):
            nn.init.normal_(e.weight, 0, 0.01)
        for e in (self.bu, self.bi):
            nn.init.zeros_(e.weight)
        with torch.no_grad():
            for e in (self.p, self.q, self.bu, self.bi):
                e.weight[0].zero_()

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pu, qi = self.p(u), self.q(i)
        logit = self.b + self.bu(u).squeeze(1) + self.bi(i).squeeze(1) + (pu * qi).sum(1)
        penalty = (pu.pow(2).sum(1) + qi.pow(2).sum(1)).mean()
        return logit, penalty


@dataclass
class BiasedMF:
    dim: int = 16
    lr: float = 0.01
    l2: float = 1e-4
    batch_size: int = 1024
    max_epochs: int = 40
    seed: int = 0

    def __post_init__(self) -> None:
        self.report: EpochReport | None = None
        self._net: _MF | None = None

    def _new(self, table: pa.Table) -> tuple[_MF, torch.optim.Optimizer]:
        torch.manual_seed(self.seed)
        self._users = _IdIndex(table.column("user_id").to_numpy().astype(np.int64))
        self._items = _IdIndex(table.column("video_id").to_numpy().astype(np.int64))
        net = _MF(self._users.ids.size, self._items.ids.size, self.dim)
        return net, torch.optim.Adam(net.parameters(), lr=self.lr)

    def _tensors(self, table: pa.Table) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (self._users(table.column("user_id").to_numpy().astype(np.int64)),
                self._items(table.column("video_id").to_numpy().astype(np.int64)),
                torch.from_numpy(labels(table)))

    def fit(self, table: pa.Table) -> BiasedMF:
        state: dict = {}

        def start(train: pa.Table) -> None:
            state["net"], state["opt"] = self._new(train)
            state["tensors"] = self._tensors(train)
            self._net = state["net"]

        def epoch(train: pa.Table, rng: np.random.Generator) -> None:
            net, opt = state["net"], state["opt"]
            u, i, y = state["tensors"]
            order = torch.from_numpy(rng.permutation(len(y)))
            net.train()
            for start_ in range(0, len(y), self.batch_size):
                b = order[start_:start_ + self.batch_size]
                logit, penalty = net(u[b], i[b])
                loss = F.binary_cross_entropy_with_logits(logit, y[b]) + self.l2 * penalty
                opt.zero_grad()
                loss.backward()
                opt.step()

        self.report = fit_epochs(table, start=start, epoch=epoch, predict=self.predict,
                                 max_epochs=self.max_epochs, seed=self.seed)
        return self

    @torch.no_grad()
    def predict(self, table: pa.Table) -> np.ndarray:
        assert self._net is not None, "fit first"
        self._net.eval()
        u, i, _ = self._tensors(table)
        logit, _ = self._net(u, i)
        return torch.sigmoid(logit).numpy().astype(np.float64)
