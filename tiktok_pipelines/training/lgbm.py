"""The LightGBM ranker: a pointwise binary model of P(engaged) on engineered features.

Pointwise (``objective="binary"``) rather than lambdarank: the server blends and thresholds
probabilities, and only probabilities can be corrected for negative downsampling
(p' = p / (p + (1 - p) / r)) and checked for calibration. It ranks a request's candidates by
that probability. The model is saved in LightGBM's own text format (never pickle) with the
feature vocabulary beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pyarrow as pa

from tiktok_pipelines.training.features import (
    CATEGORICAL_FEATURES,
    NUMERIC_NAMES,
    Vocabulary,
    labels,
    numeric_matrix,
)

MODEL_FILE = "model.txt"
VOCAB_FILE = "vocabulary.json"
DEFAULT_PARAMS = {
    "objective": "binary",
    "learning_rate": 0.1,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "verbose": -1,
    "seed": 0,
    "deterministic": True,
    "num_threads": 2,
}


class LGBMRanker:
    def __init__(self, booster: lgb.Booster, vocabulary: Vocabulary) -> None:
        self.booster = booster
        self.vocabulary = vocabulary

    @staticmethod
    def matrix(table: pa.Table, vocabulary: Vocabulary) -> np.ndarray:
        return np.hstack([numeric_matrix(table), vocabulary.encode(table).astype(np.float32)])

    @classmethod
    def fit(cls, train: pa.Table, *, rounds: int = 200, params: dict | None = None) -> LGBMRanker:
        vocab = Vocabulary.fit(train)
        names = list(NUMERIC_NAMES) + list(CATEGORICAL_FEATURES)
        data = lgb.Dataset(cls.matrix(train, vocab), label=labels(train), feature_name=names,
                           categorical_feature=list(CATEGORICAL_FEATURES), free_raw_data=True)
        booster = lgb.train({**DEFAULT_PARAMS, **(params or {})}, data, num_boost_round=rounds)
        return cls(booster, vocab)

    def predict(self, table: pa.Table) -> np.ndarray:
        """P(engaged) as trained (on the downsampled distribution); correct before comparing rates."""
        return self.booster.predict(self.matrix(table, self.vocabulary))

    def save(self, directory: Path) -> None:
        self.booster.save_model(str(directory / MODEL_FILE))
        (directory / VOCAB_FILE).write_text(json.dumps(self.vocabulary.to_json(), ensure_ascii=False))

    @classmethod
    def load(cls, directory: Path) -> LGBMRanker:
        booster = lgb.Booster(model_file=str(directory / MODEL_FILE))
        vocab = Vocabulary.from_json(json.loads((directory / VOCAB_FILE).read_text()))
        return cls(booster, vocab)
