"""Features of a labelled example as model inputs: one definition for both rankers.

Numeric features are transformed the same way everywhere (log1p for counts and durations, so
heavy tails do not dominate); categoricals become integer codes from a vocabulary fitted on the
training window and stored with the model (an unseen value gets code 0, "other"). The served
score of the production model is deliberately not a feature: experiments compare models on
their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

LOG_FEATURES = ("video_duration_ms", "video_age_h", "creator_followers", "user_views_24h",
                "user_engagements_24h", "video_views_24h")
PLAIN_FEATURES = ("video_ctr", "position", "hour_of_day")
BOOL_FEATURES = ("trending_tag", "follows_creator")
CATEGORICAL_FEATURES = ("category", "country", "language", "age_band", "surface", "candidate_source")
NUMERIC_NAMES = LOG_FEATURES + PLAIN_FEATURES + BOOL_FEATURES
ID_SLOTS = ("user_id", "video_id", "creator_id")
LABEL = "engaged"


def _column(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy(zero_copy_only=False)


def numeric_matrix(table: pa.Table) -> np.ndarray:
    """float32[n, len(NUMERIC_NAMES)]; missing values read as 0."""
    cols = []
    for name in LOG_FEATURES:
        cols.append(np.log1p(np.clip(np.nan_to_num(_column(table, name).astype(np.float64)), 0, None)))
    for name in PLAIN_FEATURES:
        cols.append(np.nan_to_num(_column(table, name).astype(np.float64)))
    for name in BOOL_FEATURES:
        cols.append(np.nan_to_num(_column(table, name).astype(np.float64)))
    return np.stack(cols, axis=1).astype(np.float32)


@dataclass
class Vocabulary:
    """Integer codes per categorical feature, fitted on training data; 0 = unseen or null."""

    codes: dict[str, dict[str, int]]

    @classmethod
    def fit(cls, table: pa.Table) -> Vocabulary:
        codes = {}
        for name in CATEGORICAL_FEATURES:
            values = sorted({v for v in table.column(name).to_pylist() if v is not None})
            codes[name] = {v: i + 1 for i, v in enumerate(values)}
        return cls(codes)

    def encode(self, table: pa.Table) -> np.ndarray:
        """int32[n, len(CATEGORICAL_FEATURES)]."""
        out = np.zeros((table.num_rows, len(CATEGORICAL_FEATURES)), dtype=np.int32)
        for j, name in enumerate(CATEGORICAL_FEATURES):
            lookup = self.codes[name]
            out[:, j] = [lookup.get(v, 0) for v in table.column(name).to_pylist()]
        return out

    def to_json(self) -> dict:
        return {"codes": self.codes}

    @classmethod
    def from_json(cls, d: dict) -> Vocabulary:
        return cls({k: dict(v) for k, v in d["codes"].items()})


def labels(table: pa.Table) -> np.ndarray:
    return _column(table, LABEL).astype(np.float32)


def ids(table: pa.Table) -> dict[str, np.ndarray]:
    return {slot: _column(table, slot).astype(np.int64) for slot in ID_SLOTS}
