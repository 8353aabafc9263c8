"""Model registry: immutable versions with cards, champion/challenger decisions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tiktok_pipelines.training.registry import ModelRegistry


def writer(text: str):
    def write(d: Path) -> None:
        (d / "model.txt").write_text(text)
    return write


def test_versions_are_immutable_and_carry_their_card(tmp_path) -> None:
    reg = ModelRegistry(tmp_path)
    v1 = reg.register("ranker", writer("a"), {"metrics": {"auc": 0.7}, "train_window": ["d1", "d2"]})
    v2 = reg.register("ranker", writer("b"), {"metrics": {"auc": 0.71}})
    assert (v1, v2) == (1, 2) and reg.versions("ranker") == [1, 2]
    card = reg.card("ranker", 1)
    assert card["metrics"]["auc"] == 0.7 and card["train_window"] == ["d1", "d2"]
    assert set(card["files"]) == {"model.txt"} and len(card["files"]["model.txt"]) == 64
    assert card["code_version"]
    assert (reg.path("ranker", 2) / "model.txt").read_text() == "b"


def test_a_failed_registration_leaves_nothing(tmp_path) -> None:
    reg = ModelRegistry(tmp_path)

    def broken(d: Path) -> None:
        (d / "half.bin").write_bytes(b"x")
        raise RuntimeError("training died")

    with pytest.raises(RuntimeError):
        reg.register("ranker", broken, {})
    assert reg.versions("ranker") == [] and not list((tmp_path / "ranker").iterdir())


def test_champion_challenger_with_margin(tmp_path) -> None:
    reg = ModelRegistry(tmp_path)
    v1 = reg.register("ranker", writer("a"), {})
    assert reg.decide("ranker", v1, 0.70, None, margin=0.002)["promoted"]
    v2 = reg.register("ranker", writer("b"), {})
    assert reg.decide("ranker", v2, 0.699, 0.700, margin=0.002)["promoted"]  # within the margin
    v3 = reg.register("ranker", writer("c"), {})
    d = reg.decide("ranker", v3, 0.690, 0.701, margin=0.002)
    assert not d["promoted"] and d["champion_before"] == v2
    pointer = json.loads((tmp_path / "ranker" / "champion.json").read_text())
    assert pointer["version"] == v2 and [h["promoted"] for h in pointer["history"]] == [True, True, False]
