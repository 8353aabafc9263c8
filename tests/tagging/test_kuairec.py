"""On real labels: KuaiRec's first-level categories, held out by video id (docs/tagging.md)."""

from __future__ import annotations

import statistics
from pathlib import Path

import polars as pl
import pytest

from tiktok_pipelines.tagging.evaluate import evaluate_frames, read_captions_csv
from tiktok_pipelines.tagging.metrics import held_out

CAPTIONS = Path(__file__).resolve().parents[3] / "shared" / "data" / "kuairec" / "video_captions.csv"
SALTS = (0, 1, 2)  # three of the five splits docs/tagging.md measures (salt 0: the one `tagging split` writes)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CAPTIONS.exists(), reason="no KuaiRec data at ../shared/data/kuairec")]


@pytest.fixture(scope="module")
def by_salt() -> dict[int, dict]:
    """``evaluate_frames`` on each split: the split ``split_captions_csv(..., salt=s)`` writes."""
    df = read_captions_csv(CAPTIONS)
    assert df.height == 8579 and df["category"].n_unique() == 39  # 38 names + missing
    out = {}
    for salt in SALTS:
        test = pl.Series(held_out(df["video_id"].to_numpy(), 0.2, salt))
        out[salt] = evaluate_frames(df.filter(~test), df.filter(test))
    return out


def test_classifier_beats_both_baselines_on_held_out_kuairec_videos(by_salt) -> None:
    r = by_salt[0]
    assert r["test_videos"] == 1705 and r["train_videos"] == 6844
    # measured 0.426 / 0.358 against rules 0.264 / 0.270 and majority 0.101: keep a clear margin
    assert r["accuracy"] > r["rules_accuracy"] + 0.10
    assert r["accuracy"] > r["majority_accuracy"] + 0.25
    assert r["macro_f1"] > r["rules_macro_f1"] + 0.03
    # confidence is calibrated on out-of-fold scores: on average close to the accuracy it claims
    assert abs(r["mean_confidence"] - r["accuracy"]) < 0.08
    # at least as accurate as scikit-learn's char 1-3-gram TF-IDF + LinearSVC on the same split
    assert r["accuracy"] >= r["baseline_accuracy"]


def test_at_least_as_accurate_as_the_baseline_over_several_splits(by_salt) -> None:
    """One split can flatter or wrong either model by a point (±1.2 points standard error on
    ~1,700 videos): the claim is on the mean over splits, and no split may fall clearly below.
    Salt 1 once scored 0.363 against 0.420: the validation cut had been empty there."""
    acc = [by_salt[s]["accuracy"] for s in SALTS]
    base = [by_salt[s]["baseline_accuracy"] for s in SALTS]
    assert statistics.fmean(acc) >= statistics.fmean(base)
    for s, a, b in zip(SALTS, acc, base, strict=True):
        assert a >= b - 0.01, f"split {s}: tagger {a:.4f} against baseline {b:.4f}"
        assert by_salt[s]["temperature"] != 1.0, f"split {s}: the model went uncalibrated"
