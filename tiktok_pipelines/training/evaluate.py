"""Offline evaluation of a click/engagement model: AUC, log loss, calibration.

Models train on examples whose negatives were kept at rate r (``sample_rate``), so their raw
probabilities are inflated. Calibration is judged after Monolith's log-odds correction
p' = p / (p + (1 - p) / r), against the labels of an evaluation set that is *not* downsampled
(the joiner's output with negative_rate = 1, or weights 1 / sample_rate).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def corrected(p: np.ndarray, r: float | np.ndarray) -> np.ndarray:
    """The probability under the full distribution, from one trained on negatives kept at rate r."""
    p = np.asarray(p, dtype=np.float64)
    return p / (p + (1.0 - p) / np.asarray(r, dtype=np.float64))


def auc(y: np.ndarray, score: np.ndarray, weight: np.ndarray | None = None) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count 1/2.

    Rank-based (Mann-Whitney), O(n log n). With weights, each example counts ``weight`` times
    (e.g. 1 / sample_rate to undo downsampling); ties are handled by midranks either way.
    """
    y = np.asarray(y).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    if weight is None:
        n_pos, n_neg = int(y.sum()), int((~y).sum())
        if n_pos == 0 or n_neg == 0:
            return float("nan")
        ranks = rankdata(s)  # midranks for ties
        return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    w = np.asarray(weight, dtype=np.float64)
    order = np.argsort(s, kind="mergesort")
    s, y, w = s[order], y[order], w[order]
    # group ties: negatives strictly below count fully, tied negatives count half
    _, start = np.unique(s, return_index=True)
    neg_w = np.where(~y, w, 0.0)
    cum_neg_before_group = np.concatenate(([0.0], np.cumsum(neg_w)))[start]
    group_of = np.searchsorted(start, np.arange(len(s)), side="right") - 1
    group_neg = np.add.reduceat(neg_w, start)
    below = cum_neg_before_group[group_of] + 0.5 * group_neg[group_of]
    pos_w = np.where(y, w, 0.0)
    total = pos_w.sum() * neg_w.sum()
    return float((pos_w * below).sum() / total) if total > 0 else float("nan")


def log_loss(y: np.ndarray, p: np.ndarray, weight: np.ndarray | None = None, eps: float = 1e-7) -> float:
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return float(np.average(-(y * np.log(p) + (1 - y) * np.log(1 - p)), weights=weight))


def calibration(y: np.ndarray, p: np.ndarray, weight: np.ndarray | None = None, bins: int = 10) -> dict:
    """Mean prediction vs observed rate overall and per equal-count bin, and the expected
    calibration error (ECE: weight-share-weighted |mean p - observed rate| over the bins)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    w = np.ones_like(p) if weight is None else np.asarray(weight, dtype=np.float64)
    order = np.argsort(p, kind="mergesort")
    parts = np.array_split(order, min(bins, max(len(p), 1)))
    rows = [(float(np.average(p[i], weights=w[i])), float(np.average(y[i], weights=w[i])), float(w[i].sum()))
            for i in parts if len(i)]
    total = w.sum()
    ece = sum(n * abs(mp - my) for mp, my, n in rows) / total if total else float("nan")
    return {"mean_prediction": float(np.average(p, weights=w)) if len(p) else float("nan"),
            "observed_rate": float(np.average(y, weights=w)) if len(y) else float("nan"),
            "ece": float(ece), "bins": rows}


def evaluate(y: np.ndarray, p_trained: np.ndarray, negative_rate: float,
             sample_rate: np.ndarray | None = None) -> dict:
    """AUC, log loss and calibration of the corrected probabilities on the full distribution.

    ``negative_rate``: the r the model's training data was downsampled with (the correction).
    ``sample_rate``: the evaluation examples' own keep rates, if the evaluation set is
    downsampled too; each example then counts 1 / sample_rate times. AUC is unchanged by the
    correction (it is monotone) but not by the weights.
    """
    p = corrected(p_trained, negative_rate)
    w = None if sample_rate is None else 1.0 / np.asarray(sample_rate, dtype=np.float64)
    cal = calibration(y, p, w)
    return {"auc": auc(y, p, w), "log_loss": log_loss(y, p, w), "ece": cal["ece"],
            "mean_prediction": cal["mean_prediction"], "observed_rate": cal["observed_rate"],
            "examples": int(len(y))}
