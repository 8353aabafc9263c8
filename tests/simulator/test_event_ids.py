"""Event ids are unique across the runs that build one world (issue 15, finding 8).

A run regenerates the ads of the days before it (their conversions land inside the run). Those
regenerated frames depend on the run's own arguments (``events_per_day`` is not part of a world's
identity), so positional ids in them named other events than the ones the earlier run wrote.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import polars as pl

from tiktok_pipelines.cli import main

COMMON = ["--users", "300", "--videos", "600", "--kuairec", "none", "--seed", "5", "--days", "1",
          "--dirty-rate", "0.03"]
RESENT = ("exact_duplicate", "conflicting_duplicate")  # the dirty injector's deliberate re-sends


def _lines_by_event_id(out: Path) -> dict[tuple[str, str], list[tuple[str, int]]]:
    """(stream, event_id) -> [(rel_path, line)] over every landing line that names an event id,
    leaving out the lines the truth records as deliberate re-sends."""
    truth = pl.concat([pl.read_parquet(p) for p in sorted((out / "truth" / "runs").glob("*/records.parquet"))])
    resent = {(r["rel_path"], r["line"]) for r in truth.filter(pl.col("kind").is_in(RESENT)).iter_rows(named=True)}
    assert resent, "the runs should re-send some records on purpose"
    seen: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    landing = out / "landing"
    for path in sorted(landing.rglob("*.ndjson")):
        rel = path.relative_to(landing).as_posix()
        stream = rel.split("/", 1)[0]
        for no, raw in enumerate(path.read_bytes().splitlines(), start=1):
            try:
                obj = json.loads(raw)
            except ValueError:
                continue  # malformed on purpose: it names no id
            if not isinstance(obj, dict) or not isinstance(obj.get("event_id"), str) or (rel, no) in resent:
                continue
            seen[(stream, obj["event_id"])].append((rel, no))
    return seen


def _reused(out: Path) -> dict:
    return {k: v for k, v in _lines_by_event_id(out).items() if len(v) > 1}


def test_consecutive_runs_never_reuse_an_event_id(tmp_path, capsys):
    """Three `simulate --first-day next` runs of one day each (the traffic changes between runs):
    apart from the injector's re-sends, no event id is used by two lines."""
    out = tmp_path / "w"
    for events in ("30000", "15000", "30000"):
        assert main(["simulate", "--out", str(out), *COMMON, "--events-per-day", events,
                     "--first-day", "next"]) == 0
    capsys.readouterr()
    assert [r["first_day"] for r in json.loads((out / "truth" / "runs.json").read_text())] == [0, 1, 2]
    reused = _reused(out)
    assert not reused, f"{len(reused)} event ids used by two events, e.g. {list(reused.items())[:3]}"


def test_an_earlier_day_simulated_after_a_later_one_reuses_no_id(tmp_path, capsys):
    """Day 1 first (its run regenerates day 0's ads for their conversions), then day 0 itself."""
    out = tmp_path / "w"
    assert main(["simulate", "--out", str(out), *COMMON, "--events-per-day", "15000", "--first-day", "1"]) == 0
    assert main(["simulate", "--out", str(out), *COMMON, "--events-per-day", "30000", "--first-day", "0"]) == 0
    capsys.readouterr()
    reused = _reused(out)
    assert not reused, f"{len(reused)} event ids used by two events, e.g. {list(reused.items())[:3]}"
