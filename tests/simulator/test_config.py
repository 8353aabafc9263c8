"""SimulationConfig: the one place the simulator's defaults live, checked when it is made."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from pathlib import Path

import pytest

from tiktok_pipelines.cli import build_parser
from tiktok_pipelines.simulator import SimulationConfig, simulate

WORLD = {"seed": 5, "users": 60, "videos": 80, "days": 1, "events_per_day": 1_500, "kuairec_dir": None}


def _digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_config_and_keyword_overrides_write_the_same_bytes(tmp_path):
    a = simulate(tmp_path / "a", SimulationConfig(**WORLD, start_date="2026-11-03"))
    b = simulate(tmp_path / "b", start_date=dt.date(2026, 11, 3), **WORLD)
    c = simulate(tmp_path / "c", SimulationConfig(**WORLD), start_date="2026-11-03")  # an override wins
    assert a.start_date == b.start_date == c.start_date == "2026-11-03"
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") == _digest(tmp_path / "c")
    assert any(k.startswith("landing/") for k in _digest(tmp_path / "a"))


def test_values_are_normalised_and_checked_on_creation():
    c = SimulationConfig(start_date="2026-12-01", kuairec_dir="somewhere")
    assert c.start_date == dt.date(2026, 12, 1) and c.kuairec_dir == Path("somewhere")
    assert c.world_key() == {"seed": 7, "users": 10_000, "videos": 20_000, "start_date": "2026-12-01",
                             "catalog_source": "kuairec"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.seed = 8  # type: ignore[misc]
    for bad in ({"days": 0}, {"first_day": -1}, {"events_per_day": 0}, {"batch_minutes": 7},
                {"dirty_rate": 0.6, "late_rate": 0.4}, {"dirty_weights": {"no_such_kind": 1.0}}):
        with pytest.raises(ValueError):
            SimulationConfig(**bad)
    with pytest.raises(TypeError):  # a misspelt option is not silently dropped
        simulate("unused", sed=3)


def test_the_cli_leaves_the_world_defaults_to_the_config():
    args = build_parser().parse_args(["simulate"])
    for name in ("seed", "users", "videos", "days", "events_per_day", "start_date", "batch_minutes",
                 "dirty_rate", "late_rate"):
        assert getattr(args, name) is None, name
    field_names = {f.name for f in dataclasses.fields(SimulationConfig)}
    assert field_names >= {"seed", "users", "videos", "days", "events_per_day", "start_date", "batch_minutes",
                           "dirty_rate", "late_rate", "first_day", "kuairec_dir"}
