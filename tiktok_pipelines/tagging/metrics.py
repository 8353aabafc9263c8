"""Accuracy and macro-F1 (scikit-learn's) and the deterministic split by video id (no Dagster import)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a fixed, well-mixed 64-bit hash (same on every machine and numpy
    version, unlike Python's salted ``hash`` or a dataframe library's internal hash)."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _id_hash(ids: Sequence[int] | np.ndarray, salt: int) -> np.ndarray:
    a = np.asarray(ids, dtype=np.int64).view(np.uint64) ^ np.uint64(salt & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        return _splitmix64(a)


def held_out(ids: Sequence[int] | np.ndarray, fraction: float = 0.2, salt: int = 0) -> np.ndarray:
    """True for the ids in the held-out part: ``hash(id, salt) mod 10_000 < fraction * 10_000``.
    An id is always on the same side, whatever else is in the file or how it is ordered."""
    return (_id_hash(ids, salt) % np.uint64(10_000)) < np.uint64(round(fraction * 10_000))


def folds(ids: Sequence[int] | np.ndarray, k: int, salt: int) -> np.ndarray:
    """Fold number (0..k-1) of each id: ``hash(id, salt) mod k``, the same id always in the same fold."""
    return (_id_hash(ids, salt) % np.uint64(k)).astype(np.int64)


def accuracy(y_true: Sequence[str], y_pred: Sequence[str | None]) -> float:
    """Share of exact matches (``sklearn.metrics.accuracy_score``); NaN when there is nothing to score."""
    if len(y_true) == 0:
        return float("nan")
    return float(accuracy_score(list(y_true), _no_none(y_pred)))


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str | None]) -> float:
    """Unweighted mean of per-class F1 over every class that is a true or a predicted label
    (``sklearn.metrics.f1_score(average="macro")``); a class with no true and no correct
    prediction scores 0. ``None`` (no prediction) is wrong and is no class of its own."""
    if len(y_true) == 0:
        return float("nan")
    labels = sorted(set(y_true) | {p for p in y_pred if p is not None})
    return float(f1_score(list(y_true), _no_none(y_pred), labels=labels, average="macro", zero_division=0.0))


def _no_none(y_pred: Sequence[str | None]) -> list[str]:
    # scikit-learn cannot mix None with strings; "" is never a category (normalised names are non-empty)
    return ["" if p is None else p for p in y_pred]


def majority(labels: Sequence[str]) -> str:
    """The most frequent label (ties: the alphabetically first, so it is deterministic)."""
    counts = Counter(labels)
    return min(counts, key=lambda c: (-counts[c], c))
