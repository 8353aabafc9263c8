"""The taxonomy file and the rules tagger (the "hashtag rules alone" baseline)."""

from __future__ import annotations

import json

import pytest

from tiktok_pipelines.simulator import text
from tiktok_pipelines.tagging.normalize import video_hashtags
from tiktok_pipelines.tagging.taxonomy import RulesTagger, load_taxonomy

KUAIREC_FIRST_LEVEL = {
    "民生资讯", "时尚", "其他", "颜值", "情感", "明星娱乐", "美食", "舞蹈", "生活", "喜剧", "自拍", "亲子", "艺术",
    "运动", "三农", "宠物", "二次元", "摄影", "音乐", "健康", "健身", "美妆", "短剧", "旅游", "汽车", "游戏",
    "科学与法律", "读书", "军事", "教育", "房产家居", "时政资讯", "影视综", "人文", "高新数码", "星座命理", "财经",
    "奇人异象",
}


def test_taxonomy_covers_kuairec_and_the_generated_catalog() -> None:
    tax = load_taxonomy()
    names = set(tax.names)
    labels = names | {a for c in tax.categories for a in c.aliases}
    assert KUAIREC_FIRST_LEVEL <= names
    assert set(text.CATEGORIES) <= labels  # every fallback category answers in its own name
    for c in tax.categories:
        if c.name != "其他":  # "other" has no rule on purpose
            assert c.keywords and c.hashtags, c.name
            # both scripts: a Chinese keyword and a Latin one where the category has an English name
            assert any("\u4e00" <= ch <= "\u9fff" for k in c.keywords for ch in k), c.name


def test_taxonomy_entries_are_normalised_on_load(tmp_path) -> None:
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"version": 2, "categories": [
        {"name": "food", "aliases": [], "hashtags": ["#ＦｏｏｄＴｏｋ", "🔥"], "keywords": ["Street  Food"]}]}))
    tax = load_taxonomy(p)
    assert tax.version == 2 and tax.categories[0].hashtags == ("foodtok",)
    assert tax.categories[0].keywords == ("street food",)


@pytest.mark.parametrize("bad", [
    {"categories": [{"aliases": []}]},
    {"categories": [{"name": "a", "aliases": ["b"]}, {"name": "b"}]},
    {"cats": []},
])
def test_invalid_taxonomy_is_refused(tmp_path, bad) -> None:
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="bad.json"):
        load_taxonomy(p)


def _match(rules, caption, tags=()):
    return rules.match(caption, video_hashtags(caption, list(tags)))


def test_rules_kuairec_label_space() -> None:
    rules = RulesTagger(labels=KUAIREC_FIRST_LEVEL)
    assert _match(rules, "今天做个家常菜", ["#美食分享"]).category == "美食"
    # an exact hashtag (3) outweighs a caption keyword (1)
    assert _match(rules, "宝宝今天学会了", ["搞笑"]).category == "喜剧"
    # English keywords reach the Chinese names
    assert _match(rules, "my new kitten").category == "宠物"
    # nothing fires
    m = _match(rules, "嗯嗯", [])
    assert m.category is None and m.score == 0 and m.terms == []


def test_rules_answer_in_the_generated_catalogs_names() -> None:
    rules = RulesTagger(labels=set(text.CATEGORIES))
    assert _match(rules, "I tried the viral ramen", ["foodtok"]).category == "food"
    assert _match(rules, "今天分享美食，记得点赞").category == "food"  # a Chinese keyword, English label
    assert _match(rules, "Testei o skincare viral").category == "beauty"
    assert "颜值" not in rules.labels and "diy" in rules.labels  # no English name: left out


def test_latin_keywords_respect_word_boundaries() -> None:
    rules = RulesTagger(labels=set(text.CATEGORIES))
    assert _match(rules, "education matters").category != "pets"  # "cat" inside "education"
    assert _match(rules, "my cat").category == "pets"
    assert _match(rules, "", ["catsoftiktok"]).category == "pets"  # exact tag


def test_ties_go_to_the_more_frequent_class() -> None:
    both = ("搞笑", "宝宝")  # one exact hashtag each: 喜剧 and 亲子 tie on 3
    assert _match(RulesTagger(labels=KUAIREC_FIRST_LEVEL, prior=["亲子", "喜剧"]), "", both).category == "亲子"
    assert _match(RulesTagger(labels=KUAIREC_FIRST_LEVEL, prior=["喜剧", "亲子"]), "", both).category == "喜剧"


def test_predict_falls_back() -> None:
    rules = RulesTagger(labels=KUAIREC_FIRST_LEVEL)
    caps = ["好吃的火锅", "……"]
    assert rules.predict(caps, [[], []], fallback="其他") == ["美食", "其他"]
