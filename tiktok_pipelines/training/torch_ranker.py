"""The torch ranker: a two-tower model whose id embeddings live in collisionless tables.

    u = E_user[user_id]                       (collisionless table, sparse Adagrad)
    v = E_video[video_id] + E_creator[creator_id]
    logit = <u, v> + MLP(dense features)      P(engaged) = sigmoid(logit)

Why two towers rather than DeepFM: the dot product separates user and item, so the model server
can retrieve candidates for a user by scoring every video vector against one user vector (or an
ANN index) straight from the published tables, which is how Monolith's embeddings are served;
a DeepFM needs a forward pass per (user, item) pair. The MLP over the context (position,
freshness, the served CTR, history counts) adds what the towers cannot know.

``step`` is the one training step (DESIGN.md decision 3): the daily batch retrain calls it over
the day's examples in time order, and the online micro-batch updates call it on each new batch
from the current state. Only the embedding rows a batch touches change, which is what makes the
online deltas small.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from torch import nn

from tiktok_pipelines.embedding.export import load_snapshot
from tiktok_pipelines.embedding.torch_module import MonolithEmbeddings, SlotSpec, default_slots, train_step
from tiktok_pipelines.training.features import ID_SLOTS, NUMERIC_NAMES, ids, labels, numeric_matrix

TABLES_DIR = "tables"
DENSE_FILE = "dense.npz"
META_FILE = "torch_ranker.json"


class TwoTowerRanker:
    def __init__(self, *, dim: int = 16, hidden: int = 32, lr_dense: float = 3e-3, seed: int = 0,
                 slots: dict[str, SlotSpec] | None = None) -> None:
        torch.manual_seed(seed)
        self.dim = dim
        specs = slots or {k: v for k, v in default_slots(dim=dim).items() if k in ID_SLOTS}
        self.embeddings = MonolithEmbeddings(specs)
        self.head = nn.Sequential(nn.Linear(len(NUMERIC_NAMES), hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.optimizer = torch.optim.Adam(self.head.parameters(), lr=lr_dense)
        self.mean: np.ndarray | None = None  # dense standardisation, fitted on the first data seen
        self.std: np.ndarray | None = None
        self.examples_seen = 0

    # --- the one training step ----------------------------------------------------------------
    def fit_standardisation(self, table: pa.Table) -> None:
        """Dense features are standardised with statistics of a whole training window (one
        batch is too narrow: an hour of data has one hour_of_day), then kept for online steps."""
        x = numeric_matrix(table)
        self.mean, self.std = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-3)

    def _dense(self, table: pa.Table) -> torch.Tensor:
        if self.mean is None:
            self.fit_standardisation(table)
        return torch.from_numpy((numeric_matrix(table) - self.mean) / self.std)

    def _logits(self, pooled: dict[str, torch.Tensor], dense: torch.Tensor) -> torch.Tensor:
        u = pooled["user_id"]
        v = pooled["video_id"] + pooled["creator_id"]
        return (u * v).sum(dim=1) + self.head(dense).squeeze(1)

    def step(self, batch: pa.Table, now_s: int) -> float:
        """One optimisation step on a batch of examples; returns its loss."""
        self.head.train()
        dense = self._dense(batch)
        y = torch.from_numpy(labels(batch))

        def loss(pooled: dict[str, torch.Tensor]) -> torch.Tensor:
            return F.binary_cross_entropy_with_logits(self._logits(pooled, dense), y)

        value = train_step(self.embeddings, loss, ids(batch), now_s=now_s, dense_optimizer=self.optimizer)
        self.examples_seen += batch.num_rows
        return value

    def fit(self, table: pa.Table, *, batch_size: int = 1024) -> list[float]:
        """One pass over the examples in time order (as the stream delivered them)."""
        if self.mean is None:
            self.fit_standardisation(table)
        order = np.argsort(table.column("ts_ms").to_numpy(), kind="stable")
        table = table.take(pa.array(order))
        losses = []
        for start in range(0, table.num_rows, batch_size):
            batch = table.slice(start, batch_size)
            now_s = int(batch.column("ts_ms")[batch.num_rows - 1].as_py() // 1000)
            losses.append(self.step(batch, now_s))
        return losses

    @torch.no_grad()
    def predict(self, table: pa.Table) -> np.ndarray:
        """P(engaged) as trained; unknown ids read zero vectors (nothing is inserted)."""
        self.embeddings.eval()
        self.head.eval()
        try:
            pooled = self.embeddings(ids(table))
            return torch.sigmoid(self._logits(pooled, self._dense(table))).numpy().astype(np.float64)
        finally:
            self.embeddings.train()

    # --- persistence (no pickle) ----------------------------------------------------------------
    def save(self, directory: Path, *, now_s: int) -> None:
        self.embeddings.export_snapshot(directory / TABLES_DIR, now_s=now_s)
        np.savez(directory / DENSE_FILE, **{k: v.detach().numpy() for k, v in self.head.state_dict().items()})
        meta = {"dim": self.dim, "hidden": self.head[0].out_features, "mean": self.mean.tolist(),
                "std": self.std.tolist(), "numeric_features": list(NUMERIC_NAMES),
                "examples_seen": self.examples_seen}
        (directory / META_FILE).write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: Path) -> TwoTowerRanker:
        meta = json.loads((directory / META_FILE).read_text())
        model = cls(dim=meta["dim"], hidden=meta["hidden"])
        model.embeddings.use_tables({slot: load_snapshot(directory / TABLES_DIR / slot)
                                     for slot in model.embeddings.tables})
        with np.load(directory / DENSE_FILE, allow_pickle=False) as z:
            model.head.load_state_dict({k: torch.from_numpy(z[k].copy()) for k in z.files})
        model.mean, model.std = np.array(meta["mean"], np.float32), np.array(meta["std"], np.float32)
        model.examples_seen = meta["examples_seen"]
        return model
