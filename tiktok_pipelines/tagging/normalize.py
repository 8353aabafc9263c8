"""Hashtag and caption normalisation for Chinese and Latin text (no Dagster import).

One rule for every tag, wherever it comes from (the catalog's list, a ``#tag`` inside a caption,
the taxonomy file): Unicode NFKC (full-width ``＃ＦＹＰ`` becomes ``#FYP``, compatibility forms fold),
case folding (``ß`` -> ``ss``, not just lower()), every leading ``#`` removed, whitespace, punctuation,
symbols (emoji) and invisible characters trimmed at both ends, inner whitespace removed (a hashtag
cannot hold a space: ``#street food`` and ``#streetfood`` are one tag). Chinese characters pass
through unchanged (no simplified/traditional conversion). A tag with nothing left is ``None``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# Unicode categories trimmed from both ends of a tag: punctuation (P*), separators (Z*), symbols
# such as emoji and currency (S*), controls/format characters such as ZWJ (C*), and combining marks
# (M*) left dangling by a trimmed emoji (variation selector U+FE0F is Mn).
_TRIM_CATEGORIES = ("P", "Z", "S", "C", "M")
_WS = re.compile(r"\s+")
# A hashtag inside a caption: '#' then anything up to whitespace or the next '#'. Kuaishou captions
# also close tags Weibo-style (``#情感视频#``), which this handles too; '@mentions' end a tag.
_CAPTION_TAG = re.compile(r"#([^#\s@]+)")


def _trim(s: str) -> str:
    start, end = 0, len(s)
    while start < end and unicodedata.category(s[start])[0] in _TRIM_CATEGORIES:
        start += 1
    while end > start and unicodedata.category(s[end - 1])[0] in _TRIM_CATEGORIES:
        end -= 1
    return s[start:end]


def normalize_text(text: str | None) -> str:
    """Caption text for matching and n-grams: NFKC, case-folded, whitespace runs collapsed."""
    if not text:
        return ""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def normalize_hashtag(tag: str | None) -> str | None:
    """One hashtag in canonical form, or ``None`` when nothing is left (``""``, ``"#"``, ``"🔥"``)."""
    if tag is None:
        return None
    s = unicodedata.normalize("NFKC", str(tag)).casefold()
    s = _WS.sub("", s)
    # Alternate: strip '#' then trim, until stable ("# #tag!", "【#搞笑#】" both reach the word).
    while True:
        before = s
        s = _trim(s.lstrip("#")).strip("#")
        if s == before:
            break
    return s or None


def caption_hashtags(caption: str | None) -> list[str]:
    """Hashtags written inside a caption (``#搞笑 #fyp``), normalised, in order, deduplicated."""
    if not caption:
        return []
    return normalize_hashtags(_CAPTION_TAG.findall(unicodedata.normalize("NFKC", caption)))


def normalize_hashtags(tags: Iterable[str | None] | None) -> list[str]:
    """Normalise a list of tags: empty ones dropped, duplicates (after normalisation) removed,
    first-seen order kept."""
    out: dict[str, None] = {}
    for t in () if tags is None else tags:
        n = normalize_hashtag(t)
        if n is not None:
            out.setdefault(n, None)
    return list(out)


def video_hashtags(caption: str | None, hashtags: Iterable[str | None] | None) -> list[str]:
    """All of a video's hashtags: the catalog's list first, then any more found in its caption."""
    return normalize_hashtags([*(() if hashtags is None else hashtags), *caption_hashtags(caption)])
