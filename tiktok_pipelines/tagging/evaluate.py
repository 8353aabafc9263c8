"""Train on one file of labelled videos, evaluate on another, beside two baselines.

Files are in KuaiRec's ``video_captions.csv`` format (``video_id, manual_cover_text, caption,
topic_tag, first_level_category_name, ...``; ``UNKNOWN`` = missing; captions may span lines inside
quotes). They are parsed the way the simulator's catalog reads them (``simulator/kuairec.py``), so
the measured model sees exactly the text the ``video_tags`` asset sees: the caption, or the
manual cover text where the caption is empty, and the topic tags. Videos without a first-level
category are left out of both training and evaluation.

Baselines, all fitted on the training file only:
- majority: always the most frequent training category;
- rules: the taxonomy's hashtag and keyword rules alone (``taxonomy.RulesTagger``), the majority
  class where no rule fires;
- baseline: scikit-learn's character 1-3-gram ``TfidfVectorizer`` + ``LinearSVC``, both with their
  defaults, on the caption and the hashtags as given (the tagger must be at least as accurate).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import polars as pl

from tiktok_pipelines.tagging.classifier import (
    DEFAULT_CANDIDATES,
    ModelSpec,
    TagClassifier,
)
from tiktok_pipelines.tagging.features import FeatureConfig
from tiktok_pipelines.tagging.metrics import accuracy, held_out, macro_f1, majority
from tiktok_pipelines.simulator.kuairec import read_captions_csv
from tiktok_pipelines.tagging.normalize import video_hashtags
from tiktok_pipelines.tagging.taxonomy import RulesTagger, Taxonomy

def split_captions_csv(src: str | Path, out_dir: str | Path, test_fraction: float = 0.2,
                       salt: int = 0) -> dict:
    """Split a captions file by video id (``metrics.held_out``) into ``train.csv`` and
    ``test.csv`` under ``out_dir``, rows unchanged. Same input, same split, on any machine."""
    df = pl.read_csv(src, infer_schema=False)
    test = pl.Series(held_out(df["video_id"].cast(pl.Int64).to_numpy(), test_fraction, salt))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df.filter(~test).write_csv(out / "train.csv")
    df.filter(test).write_csv(out / "test.csv")
    return {"train": str(out / "train.csv"), "test": str(out / "test.csv"),
            "train_rows": int((~test).sum()), "test_rows": int(test.sum()),
            "test_fraction": test_fraction, "salt": salt}


def baseline_predictions(train: pl.DataFrame, test: pl.DataFrame) -> list[str]:
    """The reference model: character 1-3-gram TF-IDF + ``LinearSVC``, scikit-learn's defaults
    (but a seed)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    def texts(df: pl.DataFrame) -> list[str]:
        return [" ".join([c or "", *(h or [])]) for c, h in zip(df["caption"].to_list(), df["hashtags"].to_list(), strict=True)]

    y = train["category"].to_list()
    if len(set(y)) < 2:  # LinearSVC needs two classes; one class is then the only answer
        return y[:1] * test.height
    # a fixed seed for liblinear's shuffling (else drawn from numpy's global state): same split, same figure
    model = make_pipeline(TfidfVectorizer(analyzer="char", ngram_range=(1, 3)), LinearSVC(random_state=0))
    return model.fit(texts(train), y).predict(texts(test)).tolist()


def evaluate_frames(train: pl.DataFrame, test: pl.DataFrame, *, features: FeatureConfig | None = None,
                    candidates: tuple[ModelSpec, ...] = DEFAULT_CANDIDATES,
                    taxonomy: Taxonomy | None = None) -> dict:
    """Fit on ``train`` (columns of ``read_captions_csv``), score on ``test``."""
    train = train.filter(pl.col("category").is_not_null())
    test = test.filter(pl.col("category").is_not_null())
    if train.height == 0:
        raise ValueError("the training file has no labelled videos")
    y_train, y_test = train["category"].to_list(), test["category"].to_list()
    t0 = time.perf_counter()
    model = TagClassifier.fit(train["caption"].to_list(), train["hashtags"].to_list(), y_train,
                              train["video_id"].to_list(), features=features, candidates=candidates,
                              taxonomy=taxonomy)
    train_s = time.perf_counter() - t0
    pred, conf = model.predict(test["caption"].to_list(), test["hashtags"].to_list())
    top = majority(y_train)
    counts = {c: y_train.count(c) for c in set(y_train)}
    rules = RulesTagger(taxonomy, labels=set(y_train), prior=sorted(counts, key=lambda c: (-counts[c], c)))
    captions = test["caption"].to_list()
    tags = [video_hashtags(c, h) for c, h in zip(captions, test["hashtags"].to_list(), strict=True)]
    matches = [rules.match(c, t).category for c, t in zip(captions, tags, strict=True)]
    rule_pred = [top if m is None else m for m in matches]
    covered = sum(m is not None for m in matches)
    base_pred = baseline_predictions(train, test)
    n = len(y_test)
    return {
        "accuracy": accuracy(y_test, pred),
        "macro_f1": macro_f1(y_test, pred),
        "majority_accuracy": accuracy(y_test, [top] * n),
        "majority_macro_f1": macro_f1(y_test, [top] * n),
        "rules_accuracy": accuracy(y_test, rule_pred),
        "rules_macro_f1": macro_f1(y_test, rule_pred),
        "rules_coverage": covered / n if n else float("nan"),
        "baseline_accuracy": accuracy(y_test, base_pred),
        "baseline_macro_f1": macro_f1(y_test, base_pred),
        "mean_confidence": float(conf.mean()) if n else float("nan"),
        "majority_class": top,
        "model": model.name,
        "selection": model.info.get("trials", []),
        "temperature": model.temperature,
        "rules_weight": model.rules_weight,
        "train_videos": len(y_train),
        "test_videos": n,
        "train_seconds": round(train_s, 3),
    }


def evaluate_files(train_csv: str | Path, test_csv: str | Path, **kwargs) -> dict:
    return evaluate_frames(read_captions_csv(train_csv), read_captions_csv(test_csv), **kwargs)


def evaluate_splits(src: str | Path, salts=range(5), test_fraction: float = 0.2, **kwargs) -> dict:
    """The tagger against the baseline over several splits of one file (``split_captions_csv`` with
    each salt, then ``evaluate_files``): per split and mean ± sample standard deviation."""
    splits = []
    for salt in salts:
        with tempfile.TemporaryDirectory(prefix="tagging-split-") as tmp:
            paths = split_captions_csv(src, tmp, test_fraction, salt=salt)
            r = evaluate_files(paths["train"], paths["test"], **kwargs)
        splits.append({"salt": salt, **{k: r[k] for k in SPLIT_KEYS}})
    summary = {}
    for k in ("accuracy", "baseline_accuracy", "macro_f1", "baseline_macro_f1"):
        v = [s[k] for s in splits]
        summary[k] = {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0}
    return {"splits": splits, "summary": summary}


SPLIT_KEYS = ("accuracy", "baseline_accuracy", "macro_f1", "baseline_macro_f1", "model", "temperature",
              "rules_weight", "test_videos", "train_seconds")


def report_lines(r: dict) -> list[str]:
    """A small markdown table of an ``evaluate_*`` result, for people (the JSON line is for scripts)."""
    return [
        (f"trained on {r['train_videos']:,} labelled videos in {r['train_seconds']:.1f} s "
         f"(selected: {r['model']}), evaluated on {r['test_videos']:,}"),
        "| predictor | accuracy | macro-F1 |",
        "|---|---|---|",
        f"| classifier | {r['accuracy']:.4f} | {r['macro_f1']:.4f} |",
        f"| baseline: char 1-3-gram TF-IDF + LinearSVC | {r['baseline_accuracy']:.4f} | {r['baseline_macro_f1']:.4f} |",
        f"| hashtag/keyword rules (fire on {r['rules_coverage']:.0%}) | {r['rules_accuracy']:.4f} | {r['rules_macro_f1']:.4f} |",
        f"| majority class ({r['majority_class']}) | {r['majority_accuracy']:.4f} | {r['majority_macro_f1']:.4f} |",
    ]
