"""The ChannelAttribution path format and the `tiktok-pipelines attribution` command."""

from __future__ import annotations

import csv
import json

import pytest

from tiktok_pipelines.attribution import PathFormatError, parse_paths, read_paths
from tiktok_pipelines.cli import main

HEADER = "path;total_conversions;total_conversion_value;total_null\n"


def test_reader_strips_whitespace_and_sums_identical_paths(tmp_path):
    f = tmp_path / "paths.csv"
    f.write_text(HEADER + " google_ads >mailing ;1;40;0\n\ngoogle_ads > mailing;2;10.5;3\nmailing;1;20;0\n",
                 encoding="utf-8")
    p = read_paths(f)
    assert p.channels == ("google_ads", "mailing")
    rows = {tuple(s): (c, v, n) for s, c, v, n in zip(p.sequences(), p.conversions, p.value, p.nulls)}
    assert rows == {("google_ads", "mailing"): (3, 50.5, 3), ("mailing",): (1, 20, 0)}


@pytest.mark.parametrize("body, line, message", [
    ("A>B;1;2\n", 2, "expected 4 fields"),
    ("A>B;1;2;0\nA;one;0;0\n", 3, "total_conversions is not a number"),
    ("A>>B;1;0;0\n", 2, "empty channel name"),
    ("A;1;-5;0\n", 2, "must be a finite non-negative number"),
    ("A;1;0;nan\n", 2, "total_null must be a finite"),
    ("A;1;0;0\nB;0;12;3\n", 3, "total_conversion_value 12 with no conversions"),
])
def test_reader_names_the_bad_line(body, line, message):
    with pytest.raises(PathFormatError, match=rf"^f\.csv:{line}: .*{message}"):
        parse_paths((HEADER + body).splitlines(keepends=True), source="f.csv")


def test_reader_rejects_a_missing_header():
    with pytest.raises(PathFormatError, match=r"^f\.csv:1: header must name"):
        parse_paths(["A>B;1;0;0\n"], source="f.csv")
    # the two optional columns may be left out
    p = parse_paths(["path;total_conversions\n", "A > B;2\n"])
    assert p.total_conversions == 2 and p.total_value == 0 and p.nulls.tolist() == [0]


def test_cli_prints_every_model_and_writes_csv(tmp_path, capsys):
    f = tmp_path / "paths.csv"
    f.write_text(HEADER + "google_ads;2;60;0\nmailing;1;20;0\ngoogle_ads > mailing;1;40;0\ngoogle_ads;0;0;1\n")
    out = tmp_path / "out" / "credits.csv"
    assert main(["attribution", "--paths", str(f), "--out", str(out)]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(last) == {"channels", "total_conversions"} and last["total_conversions"] == 4
    g, m = last["channels"]["google_ads"], last["channels"]["mailing"]
    assert set(g) == {"first", "last", "linear", "position", "markov", "markov_removal_effect", "shapley"}
    assert (g["first"], g["last"], g["linear"], g["position"], g["shapley"]) == (3, 2, 2.5, 2.5, 2.5)
    assert g["markov"] == pytest.approx(2.4) and m["markov"] == pytest.approx(1.6)
    assert g["markov_removal_effect"] == pytest.approx(0.75) and m["markov_removal_effect"] == pytest.approx(0.5)
    with out.open() as fh:
        rows = {r["channel"]: r for r in csv.DictReader(fh)}
    assert float(rows["mailing"]["markov"]) == pytest.approx(1.6)
    assert float(rows["google_ads"]["last_value"]) == pytest.approx(60.0)  # value credits too
    assert sum(float(r["shapley_value"]) for r in rows.values()) == pytest.approx(120.0)


def test_cli_reports_a_bad_file_with_its_line(tmp_path, capsys):
    f = tmp_path / "bad.csv"
    f.write_text(HEADER + "A;1;0;0\nB;1;0\n")
    assert main(["attribution", "--paths", str(f)]) == 2
    assert f"{f}:3: expected 4 fields" in capsys.readouterr().err
