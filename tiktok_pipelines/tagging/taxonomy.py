"""The content taxonomy (``assets/taxonomy.json``) and the rules tagger built on it.

The rules tagger is the "hashtag rules alone" baseline and the source of keyword tags: a video's
normalised hashtags are looked up in the taxonomy (an exact tag scores 3, a keyword inside a tag
2), and the taxonomy's keywords are searched in its caption (1 each; a one-character Chinese
keyword, e.g. 车 or 猫, scores half). The category with the highest score wins; a video where no
rule fires gets ``fallback`` (the training set's majority class for the baseline, ``None`` for
tagging). Matching is batch-friendly: every keyword goes into one compiled alternation, so a
caption costs one regex scan however large the taxonomy grows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tiktok_pipelines.paths import package_data
from tiktok_pipelines.tagging.normalize import normalize_hashtag, normalize_text

DEFAULT_TAXONOMY = package_data("assets") / "taxonomy.json"  # the repository's, or the installed package's

TAG_EXACT, TAG_KEYWORD, CAPTION_KEYWORD = 3.0, 2.0, 1.0
_LATIN = re.compile(r"^[0-9a-z][0-9a-z .'\-]*$")


@dataclass(frozen=True)
class Category:
    name: str
    aliases: tuple[str, ...]
    hashtags: tuple[str, ...]  # normalised
    keywords: tuple[str, ...]  # normalise_text'ed


@dataclass(frozen=True)
class Taxonomy:
    version: int
    categories: tuple[Category, ...]
    path: str = ""

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.categories]


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Read and validate a taxonomy file; every hashtag and keyword is normalised on the way in."""
    p = Path(path) if path else DEFAULT_TAXONOMY
    raw = json.loads(p.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not isinstance(raw.get("categories"), list):
        raise ValueError(f"{p}: expected an object with a 'categories' list")
    seen: set[str] = set()
    cats = []
    for i, c in enumerate(raw["categories"]):
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not c["name"].strip():
            raise ValueError(f"{p}: categories[{i}] needs a non-empty 'name'")
        labels = [c["name"], *c.get("aliases", [])]
        dup = seen.intersection(labels)
        if dup:
            raise ValueError(f"{p}: categories[{i}] repeats the label(s) {sorted(dup)}")
        seen.update(labels)
        hashtags = tuple(dict.fromkeys(t for t in (normalize_hashtag(h) for h in c.get("hashtags", [])) if t))
        keywords = tuple(dict.fromkeys(k for k in (normalize_text(w) for w in c.get("keywords", [])) if k))
        cats.append(Category(c["name"], tuple(c.get("aliases", [])), hashtags, keywords))
    return Taxonomy(int(raw.get("version", 1)), tuple(cats), str(p))


def _alternation(words: Iterable[str], *, latin_boundaries: bool) -> re.Pattern[str] | None:
    parts = []
    for w in sorted(set(words), key=lambda s: (-len(s), s)):  # longest first: 狮子座 before 狮子
        e = re.escape(w)
        if latin_boundaries and _LATIN.match(w):
            e = rf"(?<![0-9a-z]){e}(?![0-9a-z])"
        parts.append(e)
    return re.compile("|".join(parts)) if parts else None


@dataclass
class RuleMatch:
    category: str | None
    score: float
    terms: list[str] = field(default_factory=list)  # the taxonomy terms that fired, as tags


class RulesTagger:
    """Taxonomy rules in a given label space.

    ``labels``: the categories the caller's data uses (KuaiRec's Chinese names, or the generated
    catalog's English ones). Each taxonomy category answers with the first of its name and aliases
    that is a label; categories with none are left out. ``None``: answer with the names.
    """

    def __init__(self, taxonomy: Taxonomy | None = None, labels: Iterable[str] | None = None,
                 prior: Sequence[str] | None = None) -> None:
        self.taxonomy = taxonomy or load_taxonomy()
        label_set = None if labels is None else set(labels)
        self.tag_to: dict[str, list[str]] = {}
        self.kw_to: dict[str, list[str]] = {}
        self.labels: list[str] = []
        for c in self.taxonomy.categories:
            target = c.name if label_set is None else next(
                (x for x in (c.name, *c.aliases) if x in label_set), None)
            if target is None:
                continue
            self.labels.append(target)
            for h in c.hashtags:
                self.tag_to.setdefault(h, []).append(target)
            for k in c.keywords:
                self.kw_to.setdefault(k, []).append(target)
        # Inside a hashtag spaces are gone ("street food" -> "streetfood"), and word boundaries
        # mean nothing, so short Latin keywords would fire inside other words ("cat" in
        # "education"): only Latin keywords of 4+ letters are searched in tags.
        self.kw_in_tag: dict[str, list[str]] = {}
        for k, targets in self.kw_to.items():
            kk = k.replace(" ", "")
            if not _LATIN.match(k) or len(kk) >= 4:
                self.kw_in_tag.setdefault(kk, []).extend(targets)
        self._caption_re = _alternation(self.kw_to, latin_boundaries=True)
        self._tag_re = _alternation(self.kw_in_tag, latin_boundaries=False)
        # Ties go to the more frequent class when the caller knows the frequencies.
        order = list(prior or []) + [x for x in self.labels if x not in (prior or [])]
        self._rank = {x: i for i, x in enumerate(order)}

    def match(self, caption: str | None, hashtags: Iterable[str] | None) -> RuleMatch:
        """``hashtags`` must be normalised already (``normalize.video_hashtags``)."""
        scores: dict[str, float] = {}
        terms: dict[str, None] = {}

        def add(targets: list[str], w: float, term: str) -> None:
            for t in targets:
                scores[t] = scores.get(t, 0.0) + w / len(targets)
            terms.setdefault(term, None)

        for h in hashtags or ():
            if h in self.tag_to:
                add(self.tag_to[h], TAG_EXACT, h)
            elif self._tag_re is not None:
                for m in dict.fromkeys(self._tag_re.findall(h)):
                    add(self.kw_in_tag[m], TAG_KEYWORD * (0.5 if len(m) == 1 else 1.0), m)
        text = normalize_text(caption)
        if text and self._caption_re is not None:
            for m in dict.fromkeys(self._caption_re.findall(text)):
                add(self.kw_to[m], CAPTION_KEYWORD * (0.5 if len(m) == 1 else 1.0), m)
        if not scores:
            return RuleMatch(None, 0.0, [])
        best = max(scores.items(), key=lambda kv: (kv[1], -self._rank.get(kv[0], len(self._rank))))
        return RuleMatch(best[0], best[1], list(terms))

    def predict(self, captions: Sequence[str | None], hashtags: Sequence[Iterable[str] | None],
                fallback: str | None = None) -> list[str | None]:
        out = []
        for cap, tags in zip(captions, hashtags, strict=True):
            c = self.match(cap, tags).category
            out.append(c if c is not None else fallback)
        return out
