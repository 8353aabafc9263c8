"""Evaluation metrics against brute force and closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from tiktok_pipelines.training.evaluate import auc, calibration, corrected, evaluate, log_loss


def brute_auc(y, s, w=None):
    w = np.ones(len(y)) if w is None else w
    num = den = 0.0
    for i in np.flatnonzero(y):
        for j in np.flatnonzero(~y.astype(bool)):
            den += w[i] * w[j]
            num += w[i] * w[j] * (1.0 if s[i] > s[j] else 0.5 if s[i] == s[j] else 0.0)
    return num / den


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_pair_counting_with_ties_and_weights(seed) -> None:
    rng = np.random.default_rng(seed)
    y = rng.random(60) < 0.4
    s = rng.integers(0, 8, 60).astype(float)  # many ties
    w = rng.uniform(0.5, 3, 60)
    assert auc(y, s) == pytest.approx(brute_auc(y, s))
    assert auc(y, s, w) == pytest.approx(brute_auc(y, s, w))
    assert auc(y, s, np.ones(60)) == pytest.approx(auc(y, s))


def test_auc_extremes() -> None:
    y = np.array([0, 0, 1, 1])
    assert auc(y, np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert auc(y, np.array([0.4, 0.3, 0.2, 0.1])) == 0.0
    assert auc(y, np.zeros(4)) == 0.5
    assert np.isnan(auc(np.ones(3), np.arange(3)))


def test_log_odds_correction_recovers_the_true_rate() -> None:
    """Keep negatives at rate r, fit the base rate on the sample: the corrected rate is the truth."""
    rng = np.random.default_rng(0)
    y = rng.random(200_000) < 0.1
    r = 0.2
    kept = y | (rng.random(y.size) < r)
    p_sample = y[kept].mean()  # what a calibrated model of the sample predicts
    assert p_sample > 0.3
    assert corrected(p_sample, r) == pytest.approx(0.1, abs=0.003)
    assert corrected(0.5, 1.0) == 0.5


def test_log_loss_and_calibration() -> None:
    y = np.array([1, 0, 1, 0])
    assert log_loss(y, np.array([0.5] * 4)) == pytest.approx(np.log(2))
    cal = calibration(np.array([0, 0, 1, 1]), np.array([0.0, 0.0, 1.0, 1.0]), bins=2)
    assert cal["ece"] == 0.0 and cal["observed_rate"] == 0.5
    cal = calibration(np.array([0, 0, 0, 0]), np.array([0.5] * 4), bins=2)
    assert cal["ece"] == pytest.approx(0.5)
    m = evaluate(np.array([0, 1, 0, 1]), np.array([0.2, 0.8, 0.4, 0.9]), 1.0)
    assert m["auc"] == 1.0 and m["examples"] == 4


def test_a_downsampled_evaluation_set_is_reweighted_to_the_full_distribution() -> None:
    """Score = the true probability; evaluated on a sample that kept negatives at r, with
    weights 1/r, the observed rate and calibration match the full population's."""
    rng = np.random.default_rng(1)
    p_true = rng.uniform(0.02, 0.3, 100_000)
    y = rng.random(p_true.size) < p_true
    r = 0.25
    kept = y | (rng.random(y.size) < r)
    sample_rate = np.where(y[kept], 1.0, r)
    full = evaluate(y, p_true, 1.0)
    sampled = evaluate(y[kept], p_true[kept], 1.0, sample_rate)
    assert sampled["observed_rate"] == pytest.approx(full["observed_rate"], abs=0.005)
    assert sampled["auc"] == pytest.approx(full["auc"], abs=0.01)
    assert sampled["ece"] < 0.02 and full["ece"] < 0.02
    assert evaluate(y[kept], p_true[kept], 1.0)["observed_rate"] > full["observed_rate"] + 0.1


# The hand-written formulas these metrics had before they came from scikit-learn, kept as the
# reference that the library's numbers equal them: the promotion history compares versions
# evaluated before and after the change.
def _rank_auc(y, s, w):
    from scipy.stats import rankdata

    y = y.astype(bool)
    if w is None:
        n_pos, n_neg = int(y.sum()), int((~y).sum())
        return float((rankdata(s)[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    order = np.argsort(s, kind="mergesort")
    s, y, w = s[order], y[order], w[order]
    _, start = np.unique(s, return_index=True)
    neg_w = np.where(~y, w, 0.0)
    group_of = np.searchsorted(start, np.arange(len(s)), side="right") - 1
    below = (np.concatenate(([0.0], np.cumsum(neg_w)))[start][group_of]
             + 0.5 * np.add.reduceat(neg_w, start)[group_of])
    pos_w = np.where(y, w, 0.0)
    return float((pos_w * below).sum() / (pos_w.sum() * neg_w.sum()))


def _clipped_log_loss(y, p, w, eps=1e-7):
    p = np.clip(p, eps, 1 - eps)
    return float(np.average(-(y * np.log(p) + (1 - y) * np.log(1 - p)), weights=w))


@pytest.mark.parametrize("weighted", [False, True])
def test_library_metrics_equal_the_former_formulas(weighted) -> None:
    """Scores with ties, exact 0s and 1s (the clip at 1e-7 matters) and downsampling weights."""
    rng = np.random.default_rng(18)
    y = (rng.random(5000) < 0.3).astype(float)
    p = np.round(rng.beta(2, 5, 5000), 3)  # rounding: many tied scores
    p[:20], p[20:40] = 0.0, 1.0
    w = np.where(y == 1, 1.0, 1 / 0.3) if weighted else None
    assert auc(y, p, w) == pytest.approx(_rank_auc(y, p, w), abs=1e-9)
    assert log_loss(y, p, w) == pytest.approx(_clipped_log_loss(y, p, w), abs=1e-9)
    assert log_loss(np.ones(3), np.array([0.2, 0.5, 1.0])) == pytest.approx(
        _clipped_log_loss(np.ones(3), np.array([0.2, 0.5, 1.0]), None), abs=1e-12)  # one class only


def test_unweighted_calibration_bins_are_scikit_learns_quantile_bins() -> None:
    """calibration() stays hand-written for its weights; without them (and without ties) its
    equal-count bins are calibration_curve's quantile bins, mean for mean."""
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(3)
    p = rng.uniform(0.01, 0.6, 1000)
    y = (rng.random(1000) < p).astype(float)
    rate, mean_p = calibration_curve(y, p, n_bins=10, strategy="quantile")
    rows = calibration(y, p, bins=10)["bins"]
    assert [n for _, _, n in rows] == [100.0] * 10
    np.testing.assert_allclose([mp for mp, _, _ in rows], mean_p, rtol=0, atol=1e-12)
    np.testing.assert_allclose([my for _, my, _ in rows], rate, rtol=0, atol=1e-12)
