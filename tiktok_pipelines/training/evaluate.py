"""Offline evaluation of a click/engagement model: AUC, log loss (scikit-learn), calibration.

Models train on examples whose negatives were kept at rate r (``sample_rate``), so their raw
probabilities are inflated. Calibration is judged after Monolith's log-odds correction
p' = p / (p + (1 - p) / r), against the labels of an evaluation set that is *not* downsampled
(the joiner's output with negative_rate = 1, or weights 1 / sample_rate).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score


def corrected(p: np.ndarray, r: float | np.ndarray) -> np.ndarray:
    """The probability under the full distribution, from one trained on negatives kept at rate r."""
    p = np.asarray(p, dtype=np.float64)
    return p / (p + (1.0 - p) / np.asarray(r, dtype=np.float64))


def auc(y: np.ndarray, score: np.ndarray, weight: np.ndarray | None = None) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count 1/2.

    scikit-learn's ``roc_auc_score``; with weights each example counts ``weight`` times (e.g.
    1 / sample_rate to undo downsampling). NaN, not a warning, when one class is missing.
    """
    y = np.asarray(y).astype(bool)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, np.asarray(score, dtype=np.float64), sample_weight=weight))


def log_loss(y: np.ndarray, p: np.ndarray, weight: np.ndarray | None = None, eps: float = 1e-7) -> float:
    """Mean (weighted) binary cross-entropy: scikit-learn's ``log_loss``.

    The probabilities are clipped to [eps, 1 - eps] first, as before the library computed it:
    scikit-learn clips at the float's machine epsilon instead, so one confidently wrong example
    would weigh ~36 rather than ~16 and the versions' numbers would no longer compare.
    """
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return float(sk_log_loss(np.asarray(y, dtype=np.float64), p, sample_weight=weight, labels=[0.0, 1.0]))


def calibration(y: np.ndarray, p: np.ndarray, weight: np.ndarray | None = None, bins: int = 10) -> dict:
    """Mean prediction vs observed rate overall and per equal-count bin, and the expected
    calibration error (ECE: weight-share-weighted |mean p - observed rate| over the bins).

    Written here, not scikit-learn's ``calibration_curve``: that takes no sample weights, and an
    evaluation set with downsampled negatives is only calibrated once each example counts
    1 / sample_rate times. Unweighted and without ties, the bins are the library's
    ``strategy="quantile"`` ones (a test holds them equal); docs/handwritten.md.
    """
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
