"""Caption and hashtags -> TF-IDF rows, with scikit-learn's ``TfidfVectorizer`` (no Dagster import).

Chinese has no spaces between words, so words are not a usable unit without a segmenter;
character 1-2-grams capture both Chinese words (most are 1-2 characters) and Latin sub-words
(cross-validated on KuaiRec's training part, 1-2 edges out 1-3 and is a third of its size; without
the unigrams, 2-4-grams lose 4 points; jieba's words alone 2 points, and add nothing beside them). One
document per video: the normalised caption (NFKC, case-folded: ``normalize.normalize_text``), then
its normalised hashtags (the catalog's list and ``#tags`` in the caption), space-separated, so a
tag's characters are features too (half the videos have tags that are not in the caption).

Measured on the validation split (docs/tagging.md): whole-hashtag tokens in a ``FeatureUnion``
beside the character n-grams cost 2.5 points of accuracy (0.400 vs 0.424: they duplicate the
tag's characters and overfit rare tags), and so did separate n-gram spaces for caption and tags
(0.403); so the tagger uses one character vectoriser.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from tiktok_pipelines.tagging.normalize import normalize_text, video_hashtags

if TYPE_CHECKING:
    from sklearn.feature_extraction.text import TfidfVectorizer


@dataclass(frozen=True)
class FeatureConfig:
    ngram_min: int = 1
    ngram_max: int = 2  # 4-fold CV on two KuaiRec training files: 1-2 0.424/0.425, 1-3 0.419/0.422
    min_df: int = 1  # validation accuracy 0.423 against 0.415 with min_df 2 (which halves the model)
    max_df: float = 1.0
    max_features: int | None = 300_000
    sublinear_tf: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def doc_text(caption: str | None, hashtags: Iterable[str]) -> str:
    """The text the vectoriser reads for one video (``hashtags`` already normalised)."""
    return " ".join([normalize_text(caption), *hashtags]).strip()


def video_docs(captions: Sequence[str | None], hashtags: Sequence[Iterable[str] | None]) -> list[str]:
    """``doc_text`` of each video, its hashtags normalised from the catalog's list and the caption."""
    return [doc_text(c, video_hashtags(c, h)) for c, h in zip(captions, hashtags, strict=True)]


def make_vectorizer(cfg: FeatureConfig, vocabulary: Sequence[str] | None = None,
                    idf: np.ndarray | None = None) -> TfidfVectorizer:
    """An unfitted vectoriser for ``cfg``; with ``vocabulary`` and ``idf`` (a saved model's), a
    fitted one that transforms exactly as the one they came from."""
    # Imported here: ~1 s of imports that every Dagster run worker would pay with the code location.
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(
        analyzer="char", ngram_range=(cfg.ngram_min, cfg.ngram_max), lowercase=False,  # text is case-folded
        min_df=cfg.min_df, max_df=cfg.max_df, max_features=cfg.max_features, sublinear_tf=cfg.sublinear_tf,
        dtype=np.float64,
        vocabulary=None if vocabulary is None else {t: i for i, t in enumerate(vocabulary)},
    )
    if vocabulary is not None:
        if idf is None or len(idf) != len(vocabulary):
            raise ValueError("a saved vocabulary needs its idf, one value per term")
        vec.idf_ = np.asarray(idf, dtype=np.float64)
    return vec


def vocabulary_list(vec: TfidfVectorizer) -> list[str]:
    """The fitted vocabulary as a list, term ``i`` at position ``i`` (what the model file keeps)."""
    terms = [""] * len(vec.vocabulary_)
    for t, i in vec.vocabulary_.items():
        terms[i] = t
    return terms
