"""``tiktok-pipelines tagging evaluate|split`` on tiny files in KuaiRec's video_captions.csv format."""

from __future__ import annotations

import csv
import json

import polars as pl

from tests.tagging.test_classifier import synthetic
from tiktok_pipelines.cli import main
from tiktok_pipelines.tagging.evaluate import read_captions_csv

HEADER = ["video_id", "manual_cover_text", "caption", "topic_tag", "first_level_category_id",
          "first_level_category_name", "second_level_category_id", "second_level_category_name",
          "third_level_category_id", "third_level_category_name"]


def write_captions(path, rows) -> None:
    """rows: (video_id, caption, tags, category or None), written the way KuaiRec writes them."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for vid, cap, tags, cat in rows:
            topic = "[" + ",".join(t.lstrip("#") for t in tags) + "]"
            w.writerow([vid, "UNKNOWN", cap, topic, -124 if cat is None else 1, cat or "UNKNOWN",
                        -124, "UNKNOWN", -124, "UNKNOWN"])


def _last_json(capsys) -> dict:
    lines = capsys.readouterr().out.strip().splitlines()
    return json.loads(lines[-1])


def test_reader_parses_multiline_captions_tags_and_missing_labels(tmp_path) -> None:
    p = tmp_path / "v.csv"
    write_captions(p, [(1, "第一行\n第二行 #美食", ["美食", " 家常菜 "], "美食"), (2, "", [], None)])
    df = read_captions_csv(p)
    assert df["caption"].to_list() == ["第一行\n第二行 #美食", ""]
    assert df["hashtags"].to_list() == [["美食", "家常菜"], []]
    assert df["category"].to_list() == ["美食", None]


def test_evaluate_prints_one_json_line_last(tmp_path, capsys) -> None:
    caps, tags, labels = synthetic(40, seed=11)
    rows = [(i + 1, c, t, lab) for i, (c, t, lab) in enumerate(zip(caps, tags, labels))]
    rows.append((9999, "没有标签的视频", [], None))  # unlabelled: left out of both sides
    write_captions(tmp_path / "train.csv", rows)
    caps, tags, labels = synthetic(8, seed=12, tag_rate=0.0)
    write_captions(tmp_path / "test.csv",
                   [(10_000 + i, c, t, lab) for i, (c, t, lab) in enumerate(zip(caps, tags, labels))])
    assert main(["tagging", "evaluate", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv")]) == 0
    out = _last_json(capsys)
    assert list(out) == ["accuracy", "macro_f1", "majority_accuracy", "rules_accuracy", "baseline_accuracy",
                         "test_videos"]
    assert out["test_videos"] == 40
    assert out["majority_accuracy"] == 0.2  # five balanced classes
    assert out["accuracy"] >= 0.9 > out["majority_accuracy"]
    assert 0 <= out["rules_accuracy"] <= 1 and 0 < out["macro_f1"] <= 1
    # the reference model (char 1-3-gram TF-IDF + LinearSVC) learns this easy set too
    assert out["accuracy"] >= out["baseline_accuracy"] >= 0.9


def test_baseline_is_scikit_learns_char_tfidf_linear_svc(tmp_path) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    from tiktok_pipelines.tagging.evaluate import baseline_predictions

    caps, tags, labels = synthetic(20, seed=14)
    train = pl.DataFrame({"caption": caps, "hashtags": tags, "category": labels})
    caps, tags, labels = synthetic(6, seed=15, tag_rate=0.0)
    test = pl.DataFrame({"caption": caps, "hashtags": tags, "category": labels})
    got = baseline_predictions(train, test)
    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3))
    texts = [" ".join([c, *t]) for c, t in zip(train["caption"], train["hashtags"].to_list())]
    svc = LinearSVC(random_state=0).fit(vec.fit_transform(texts), train["category"].to_list())
    want = svc.predict(vec.transform([" ".join([c, *t]) for c, t in zip(test["caption"], test["hashtags"].to_list())]))
    assert got == want.tolist() and len(got) == 30
    one = train.filter(pl.col("category") == "美食")
    assert baseline_predictions(one, test) == ["美食"] * 30  # one class: the only answer


def test_split_by_video_id_then_evaluate_equals_the_one_command(tmp_path, capsys) -> None:
    caps, tags, labels = synthetic(40, seed=13)
    src = tmp_path / "all.csv"
    write_captions(src, [(i * 7 + 3, c, t, lab) for i, (c, t, lab) in enumerate(zip(caps, tags, labels))])
    assert main(["tagging", "split", "--kuairec-file", str(src), "--out", str(tmp_path / "s")]) == 0
    split = _last_json(capsys)
    train, test = pl.read_csv(split["train"], infer_schema=False), pl.read_csv(split["test"], infer_schema=False)
    assert train.height + test.height == 200 and split["test_rows"] == test.height > 20
    assert set(train["video_id"]).isdisjoint(test["video_id"])
    assert train.columns == HEADER  # rows copied unchanged, same format
    assert main(["tagging", "evaluate", "--train", split["train"], "--test", split["test"]]) == 0
    two_step = _last_json(capsys)
    assert main(["tagging", "evaluate", "--kuairec-file", str(src)]) == 0
    assert _last_json(capsys) == two_step  # deterministic split and training
    assert two_step["test_videos"] == test.height


def test_evaluate_needs_files(capsys) -> None:
    assert main(["tagging", "evaluate", "--train", "x.csv"]) == 2
