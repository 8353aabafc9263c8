"""Tag a whole video catalog (no Dagster import): what the ``video_tags`` asset runs.

Per video: ``tags`` (normalised hashtags, from the catalog's list and the caption, then the
taxonomy terms that fired), ``category``, ``confidence`` and ``method``:

- ``manual``: the catalog carries a category label (confidence 1) — a label someone assigned
  beats a guess; set ``prefer_labels=False`` to get the classifier's answer for every video;
- ``classifier``: the classifier's category and calibrated probability (``classifier.py``),
  trained on every labelled video of the catalog;
- ``rules``: no labelled videos to learn from, so the taxonomy rules decide (confidence NULL:
  a rule score is not a probability);
- ``none``: nothing to go on (category and confidence NULL).

The held-out figures come from a separate fit: labelled videos split by id (the KuaiRec source id
where there is one), train on one side, score the other, beside the majority-class and rules
baselines. In a KuaiRec-backed catalog the simulator's extra videos copy a real video's caption
(``source = 'generated'`` beside ``'kuairec'`` rows), so they are left out of that evaluation:
a copy on each side of the split would flatter the score.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from tiktok_pipelines.tagging.classifier import (
    DEFAULT_CANDIDATES,
    ModelSpec,
    TagClassifier,
)
from tiktok_pipelines.tagging.features import FeatureConfig
from tiktok_pipelines.tagging.metrics import accuracy, held_out, macro_f1, majority
from tiktok_pipelines.tagging.normalize import normalize_hashtags, video_hashtags
from tiktok_pipelines.tagging.taxonomy import RulesTagger, Taxonomy, load_taxonomy

OUTPUT_SCHEMA = {"video_id": pl.Int64, "tags": pl.List(pl.String), "category": pl.String,
                 "confidence": pl.Float64, "method": pl.String}
MIN_EVAL = 10  # fewer held-out (or training) videos than this: no held-out figures


@dataclass
class TaggingResult:
    tags: pl.DataFrame  # OUTPUT_SCHEMA, one row per video
    metrics: dict = field(default_factory=dict)
    model: TagClassifier | None = None


def _sample_ids(ids: np.ndarray, limit: int) -> np.ndarray:
    """About ``limit`` rows (all when there are fewer), chosen by id hash (deterministic, order-free)."""
    if len(ids) <= limit:
        return np.ones(len(ids), dtype=bool)
    return held_out(ids, limit / len(ids), salt=7)


def holdout_evaluation(videos: pl.DataFrame, *, test_fraction: float = 0.2, taxonomy: Taxonomy | None = None,
                       features: FeatureConfig | None = None,
                       candidates: tuple[ModelSpec, ...] = DEFAULT_CANDIDATES,
                       max_train_videos: int = 50_000) -> dict:
    """Held-out accuracy/macro-F1 of the classifier and both baselines on a catalog's labels."""
    lab = videos.filter(pl.col("category").is_not_null())
    if "source" in lab.columns and {"kuairec", "generated"} <= set(lab["source"].unique().to_list()):
        lab = lab.filter(pl.col("source") != "generated")
    key = pl.coalesce("source_video_id", "video_id") if "source_video_id" in lab.columns else pl.col("video_id")
    keys = lab.select(k=key.cast(pl.Int64))["k"].to_numpy()
    test_mask = held_out(keys, test_fraction, salt=0)
    train, test = lab.filter(pl.Series(~test_mask)), lab.filter(pl.Series(test_mask))
    train = train.filter(pl.Series(_sample_ids(train["video_id"].to_numpy(), max_train_videos)))
    if test.height < MIN_EVAL or train.height < MIN_EVAL:
        return {"evaluated": False, "reason": f"{train.height} train / {test.height} held-out labelled videos",
                "train_videos": train.height, "test_videos": test.height}
    y_train, y_test = train["category"].to_list(), test["category"].to_list()
    t0 = time.perf_counter()
    model = TagClassifier.fit(train["caption"].to_list(), train["hashtags"].to_list(), y_train,
                              train["video_id"].to_list(), features=features, candidates=candidates,
                              taxonomy=taxonomy)
    seconds = time.perf_counter() - t0
    pred, _ = model.predict(test["caption"].to_list(), test["hashtags"].to_list())
    top = majority(y_train)
    counts = Counter(y_train)
    rules = RulesTagger(taxonomy, labels=set(y_train), prior=sorted(counts, key=lambda c: (-counts[c], c)))
    caps = test["caption"].to_list()
    tags = [video_hashtags(c, h) for c, h in zip(caps, test["hashtags"].to_list(), strict=True)]
    rule_pred = rules.predict(caps, tags, fallback=top)
    return {
        "evaluated": True, "accuracy": accuracy(y_test, pred), "macro_f1": macro_f1(y_test, pred),
        "majority_accuracy": accuracy(y_test, [top] * len(y_test)),
        "rules_accuracy": accuracy(y_test, rule_pred), "rules_macro_f1": macro_f1(y_test, rule_pred),
        "train_videos": train.height, "test_videos": test.height, "train_seconds": round(seconds, 3),
        "model": model.name, "selected": model.selection,
    }


def tag_videos(videos: pl.DataFrame, *, taxonomy: Taxonomy | None = None, prefer_labels: bool = True,
               evaluate: bool = True, test_fraction: float = 0.2, features: FeatureConfig | None = None,
               candidates: tuple[ModelSpec, ...] = DEFAULT_CANDIDATES,
               max_train_videos: int = 50_000) -> TaggingResult:
    """``videos``: ``video_id, caption, hashtags, category`` (+ optional ``source``,
    ``source_video_id``), as in the catalog's ``videos.parquet``."""
    taxonomy = taxonomy or load_taxonomy()
    ids = videos["video_id"].cast(pl.Int64).to_numpy()
    captions = videos["caption"].to_list()
    raw_tags = videos["hashtags"].to_list()
    labels = videos["category"].to_list()
    labelled = np.array([c is not None for c in labels], dtype=bool)
    known = sorted({c for c in labels if c is not None})

    norm_tags = [video_hashtags(c, h) for c, h in zip(captions, raw_tags, strict=True)]
    rules = RulesTagger(taxonomy, labels=known or None)
    matches = [rules.match(c, t) for c, t in zip(captions, norm_tags, strict=True)]
    # Taxonomy terms become tags too ("美食" found in a caption); a multi-word keyword is
    # normalised like a hashtag ("street food" -> "streetfood"). One-character terms (哭, 车)
    # help the rules score but say too little to stand as tags.
    tags = [normalize_hashtags([*t, *(x for x in m.terms if len(x) > 1)]) for t, m in zip(norm_tags, matches, strict=True)]

    metrics: dict = {"videos": len(ids), "labelled_videos": int(labelled.sum()), "classes": len(known)}
    selected = None
    if evaluate and labelled.any():
        held = holdout_evaluation(videos, test_fraction=test_fraction, taxonomy=taxonomy, features=features,
                                  candidates=candidates, max_train_videos=max_train_videos)
        selected = held.pop("selected", None)  # the final fit reuses its model choice and temperature
        metrics.update(held)
    model = None
    n = len(ids)
    category: list[str | None] = [None] * n
    confidence = np.full(n, np.nan)
    method = ["none"] * n
    if labelled.any():
        idx = np.flatnonzero(labelled)
        idx = idx[_sample_ids(ids[idx], max_train_videos)]
        model = TagClassifier.fit([captions[i] for i in idx], [raw_tags[i] for i in idx],
                                  [labels[i] for i in idx], ids[idx].tolist(), features=features,
                                  candidates=candidates, selected=selected, taxonomy=taxonomy)
        pred, conf = model.predict(captions, raw_tags)
        category, confidence, method = list(pred), np.asarray(conf, dtype=np.float64), ["classifier"] * n
        metrics["model"] = model.name
        metrics["final_train_seconds"] = model.info.get("train_seconds")
    else:
        for i, m in enumerate(matches):
            if m.category is not None:
                category[i], method[i] = m.category, "rules"
    if prefer_labels:
        for i in np.flatnonzero(labelled):
            category[i], confidence[i], method[i] = labels[i], 1.0, "manual"
    out = pl.DataFrame(
        {"video_id": ids, "tags": tags, "category": category,
         "confidence": pl.Series(confidence).fill_nan(None), "method": method},
        schema=OUTPUT_SCHEMA,
    )
    metrics["methods"] = dict(Counter(method))
    metrics["category_distribution"] = dict(Counter(c for c in category if c is not None).most_common())
    return TaggingResult(out, metrics, model)
