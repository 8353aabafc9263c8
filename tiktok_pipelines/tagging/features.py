"""Character n-grams of captions and hashtags as a scipy sparse matrix (no Dagster import).

Chinese has no spaces between words, so words are not a usable unit without a segmenter;
character 1-3-grams capture both Chinese words (most are 1-3 characters) and Latin sub-words.
Each hashtag also counts as one whole-tag feature (``#<tag>``), weighted by ``hashtag_weight``:
hashtags are the uploader's own labels. The vocabulary keeps features seen in at least ``min_df``
training videos (the rest cannot generalise) and is stored with the model, so there are no hash
collisions and a saved model explains itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp

from tiktok_pipelines.tagging.normalize import normalize_text


@dataclass(frozen=True)
class FeatureConfig:
    ngram_min: int = 1
    ngram_max: int = 2
    hashtag_weight: float = 1.0  # weight of a whole-hashtag feature; 0 leaves them out
    tag_ngrams: bool = True  # also take char n-grams of hashtags (they are often not in the caption)
    min_df: int = 2
    max_features: int = 300_000
    sublinear_tf: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def doc_terms(caption: str | None, hashtags: Iterable[str], cfg: FeatureConfig) -> Counter[str]:
    """Feature name -> raw count for one video (``hashtags`` already normalised)."""
    c: Counter[str] = Counter()
    texts = [normalize_text(caption)]
    tags = list(hashtags)
    if cfg.tag_ngrams:
        texts.extend(tags)
    for t in texts:
        if not t:
            continue
        s = f" {t} "  # a boundary marker, so word starts/ends are features of their own
        for n in range(cfg.ngram_min, cfg.ngram_max + 1):
            c.update(s[i:i + n] for i in range(len(s) - n + 1))
    c.pop(" ", None)
    if cfg.hashtag_weight > 0:
        for tag in tags:
            c["#" + tag] += cfg.hashtag_weight
    return c


class Vectorizer:
    """Vocabulary + idf learnt on training videos; ``transform`` gives L2-normalised tf-idf rows."""

    def __init__(self, cfg: FeatureConfig, vocabulary: list[str] | None = None,
                 idf: np.ndarray | None = None) -> None:
        self.cfg = cfg
        self.vocabulary = vocabulary or []
        self.index = {t: i for i, t in enumerate(self.vocabulary)}
        self.idf = idf if idf is not None else np.ones(len(self.vocabulary))

    @property
    def n_features(self) -> int:
        return len(self.vocabulary)

    def fit(self, docs: Sequence[Counter[str]]) -> Vectorizer:
        df: Counter[str] = Counter()
        for d in docs:
            df.update(d.keys())
        kept = [(t, n) for t, n in df.items() if n >= self.cfg.min_df]
        kept.sort(key=lambda tn: (-tn[1], tn[0]))  # deterministic: frequency, then the term itself
        kept = kept[: self.cfg.max_features]
        self.vocabulary = [t for t, _ in kept]
        self.index = {t: i for i, t in enumerate(self.vocabulary)}
        counts = np.array([n for _, n in kept], dtype=np.float64)
        self.idf = np.log((1 + len(docs)) / (1 + counts)) + 1.0  # smoothed idf, as usual
        return self

    def counts(self, docs: Sequence[Counter[str]]) -> sp.csr_matrix:
        """Raw counts (what naive Bayes wants)."""
        indptr = [0]
        indices: list[int] = []
        data: list[float] = []
        idx = self.index
        for d in docs:
            for t, v in d.items():
                j = idx.get(t)
                if j is not None:
                    indices.append(j)
                    data.append(v)
            indptr.append(len(indices))
        return sp.csr_matrix((np.asarray(data, dtype=np.float64), np.asarray(indices, dtype=np.int64),
                              np.asarray(indptr, dtype=np.int64)), shape=(len(docs), self.n_features))

    def tfidf(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        x = counts.copy()
        if self.cfg.sublinear_tf:
            x.data = 1.0 + np.log(np.maximum(x.data, 1e-12))
        x = x.multiply(self.idf[None, :]).tocsr()
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sp.diags(1.0 / norms) @ x
