"""Hashtag normalisation: one canonical form for the tags of Chinese and Latin captions."""

from __future__ import annotations

import pytest

from tiktok_pipelines.tagging.normalize import (
    caption_hashtags,
    normalize_hashtag,
    normalize_hashtags,
    normalize_text,
    video_hashtags,
)


@pytest.mark.parametrize(("raw", "expected"), [
    ("#FYP", "fyp"),
    ("＃ＦＹＰ", "fyp"),  # full-width '#' and Latin letters fold to ASCII (NFKC)
    ("##double", "double"),
    ("  #Foodtok  ", "foodtok"),
    ("#Straße", "strasse"),  # case folding, not lower(): ß -> ss
    ("#美食", "美食"),
    ("#美食分享#", "美食分享"),  # Weibo-style closing '#'
    ("【搞笑】", "搞笑"),  # full-width brackets are punctuation
    ("#搞笑！", "搞笑"),  # full-width exclamation mark
    ("#Vlog日常", "vlog日常"),  # mixed scripts stay together
    ("#ＶＬＯＧ日常", "vlog日常"),
    ("#cats🐱", "cats"),  # trailing emoji trimmed
    ("🔥#fire🔥", "fire"),
    ("#❤️love", "love"),  # emoji + variation selector trimmed at the start
    ("#street food", "streetfood"),  # a hashtag has no spaces
    ("#rock&roll", "rock&roll"),  # inner punctuation is part of the tag
    ("#ｃａｆé", "café"),
    ("#cafe\u0301", "caf\u00e9"),  # decomposed e + combining accent composes (NFKC)
    ("#１２３", "123"),
])
def test_normalize_hashtag(raw: str, expected: str) -> None:
    assert normalize_hashtag(raw) == expected


@pytest.mark.parametrize("empty", ["", "#", "##", "   ", "#  ", "🔥", "❤️", "！！", "\u200b", None])
def test_empty_tags_are_none(empty) -> None:
    assert normalize_hashtag(empty) is None


def test_list_drops_empty_and_duplicates_after_normalising_keeps_order() -> None:
    assert normalize_hashtags(["#FYP", "fyp", "", "＃ｆｙｐ", "#美食", None, "🔥", "美食 "]) == ["fyp", "美食"]
    assert normalize_hashtags(None) == []


def test_caption_hashtags_chinese_latin_and_mentions() -> None:
    cap = "#搞笑 #感谢快手我要上热门 @某人(O123) 这真是#五爱市场 #情感视频# ok #FYP🔥 ## #"
    assert caption_hashtags(cap) == ["搞笑", "感谢快手我要上热门", "五爱市场", "情感视频", "fyp"]
    assert caption_hashtags(None) == [] and caption_hashtags("no tags here") == []


def test_video_hashtags_merges_list_and_caption() -> None:
    assert video_hashtags("好吃 #美食 #Yummy", ["美食", "#FoodTok"]) == ["美食", "foodtok", "yummy"]


def test_normalize_text() -> None:
    assert normalize_text("  ＨＥＬＬＯ\n  世界\t！ ") == "hello 世界 !"
    assert normalize_text(None) == ""
