"""The joiner on events that went through the real ingest engine into a real Parquet lake."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.ingest.conftest import FLUSHED_AT_MS, dumps, write_landing
from tiktok_pipelines.ingest.engine import Lake, ingest_files
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.training.joiner import (
    HISTORY_FEATURES,
    SERVED_FEATURES,
    JoinerConfig,
    build_examples,
    examples_lake_versions,
    read_examples,
    read_lake_versions,
)

T0 = FLUSHED_AT_MS - 2 * 3_600_000  # 2026-11-02 10:00 UTC
DAY = "2026-11-02"
FEATURES = ["example_id", *SERVED_FEATURES, *HISTORY_FEATURES, "hour_of_day", "user_id", "video_id",
            "creator_id", "position", "served_score"]
LABEL_COLS = ["played", "watch_time_ms", "finished", "liked", "shared", "commented", "followed", "engaged"]


def served(i: int) -> dict:
    return {"age_band": "18-24", "country": "JP", "language": "ja", "category": f"c{i % 3}",
            "video_duration_ms": 10_000, "video_age_h": 1.5 + i, "creator_followers": 100 + i,
            "video_ctr": 0.05, "trending_tag": i % 2 == 0, "follows_creator": False}


def impression(eid: str, ts: int, user: int, video: int, creator: int, request: str, i: int = 0) -> dict:
    return {"event_id": eid, "ts_ms": ts, "user_id": user, "request_id": request, "session_id": f"s{user}",
            "video_id": video, "creator_id": creator, "position": i % 5, "surface": "foryou",
            "candidate_source": "personal", "model_version": "m1", "score": 0.5, "served_features": served(i)}


def view(eid: str, ts: int, user: int, video: int, creator: int, watch: int, request: str | None) -> dict:
    return {"event_id": eid, "ts_ms": ts, "user_id": user, "session_id": f"s{user}", "request_id": request,
            "video_id": video, "creator_id": creator, "watch_time_ms": watch, "video_duration_ms": 10_000,
            "traffic_source": "foryou"}


def interaction(eid: str, ts: int, user: int, kind: str, video: int | None, creator: int,
                request: str | None) -> dict:
    return {"event_id": eid, "ts_ms": ts, "user_id": user, "event_type": kind, "video_id": video,
            "creator_id": creator, "comment_text": "nice" if kind == "comment" else None,
            "share_channel": "im" if kind == "share" else None, "request_id": request}


def ingest(landing: Path, lake: Path | str, events: dict[str, list[dict]], seq: int,
           flushed_at_ms: int = FLUSHED_AT_MS) -> None:
    for stream, rows in events.items():
        if rows:
            write_landing(landing, stream, [dumps(r) for r in rows], seq=seq, flushed_at_ms=flushed_at_ms)
    # the ingest runs after the flush (a flush time ahead of the ingest's clock is quarantined)
    ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake,
                 now_ms=max(FLUSHED_AT_MS, flushed_at_ms))


def examples(lake: Path) -> dict[str, dict]:
    t = read_examples(lake, order_by=None)
    rows = [] if t is None else t.drop_columns(["event_date"]).to_pylist()
    return {r["example_id"]: r for r in rows}


S = 1000
SCENARIO = {
    "impressions": [
        impression("A", T0, 1, 10, 100, "r1", 0),
        impression("B", T0 + 1 * S, 1, 11, 101, "r1", 1),
        impression("C", T0, 2, 10, 100, "r2", 2),
        impression("D", T0 + 5 * S, 2, 12, 102, "r2", 3),
        impression("E", T0, 3, 13, 103, "r3", 4),
        impression("F", T0 + 60 * S, 3, 14, 104, "r3", 5),
    ],
    "views": [
        view("vA", T0 + 20 * S, 1, 10, 100, 9_000, "r1"),  # 90% watched: engaged, not finished
        view("vB", T0 + 40 * S, 1, 11, 101, 12_000, "r1"),  # looped: finished
        view("vC", T0 + 31 * 60 * S, 2, 10, 100, 10_000, "r2"),  # after the 30-minute window
        view("vE", T0 + 10 * S, 3, 13, 103, 10_000, "other-request"),  # another feed's play
        view("vF0", T0 + 30 * S, 3, 99, 109, 500, None),  # user 3's history before F
    ],
    "interactions": [
        interaction("iB", T0 + 50 * S, 1, "like", 11, 101, "r1"),
        interaction("iD", T0 + 60 * S, 2, "follow", 12, 102, "r2"),  # followed from the video
        interaction("iA", T0 + 30 * S, 1, "comment", 10, 100, "r1"),
        # actions that name no impression of theirs label nothing: a like from a profile page
        # (no request), a follow of F's creator from the creator's page, a like in another request
        interaction("iC", T0 + 20 * S, 2, "like", 10, 100, None),
        interaction("iF", T0 + 70 * S, 3, "follow", None, 104, None),
        interaction("iE", T0 + 20 * S, 3, "like", 13, 103, "other-request"),
    ],
}


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    landing.mkdir()
    ingest(landing, lake, SCENARIO, seq=1)
    return landing, lake


def test_labels_follow_the_documented_rules(world) -> None:
    _, lake = world
    report = build_examples(lake, JoinerConfig(negative_rate=1.0))
    assert report.built == {DAY: 6}
    ex = examples(lake)
    got = {k: {c: ex[k][c] for c in LABEL_COLS} for k in ex}
    assert got == {
        "A": dict(played=True, watch_time_ms=9_000, finished=False, liked=False, shared=False,
                  commented=True, followed=False, engaged=True),
        "B": dict(played=True, watch_time_ms=12_000, finished=True, liked=True, shared=False,
                  commented=False, followed=False, engaged=True),
        "C": dict(played=False, watch_time_ms=0, finished=False, liked=False, shared=False,
                  commented=False, followed=False, engaged=False),
        "D": dict(played=False, watch_time_ms=0, finished=False, liked=False, shared=False,
                  commented=False, followed=True, engaged=True),
        "E": dict(played=False, watch_time_ms=0, finished=False, liked=False, shared=False,
                  commented=False, followed=False, engaged=False),
        "F": dict(played=False, watch_time_ms=0, finished=False, liked=False, shared=False,
                  commented=False, followed=False, engaged=False),
    }
    assert ex["A"]["watch_ratio"] == pytest.approx(0.9)
    # served features come from the feature log, typed
    assert ex["B"]["category"] == "c1" and ex["B"]["video_age_h"] == 2.5 and ex["B"]["trending_tag"] is False
    # history strictly before the impression: user 3 played vE (T0+10s) and vF0 (T0+30s) before F
    assert ex["F"]["user_views_24h"] == 2 and ex["E"]["user_views_24h"] == 0
    assert ex["B"]["user_engagements_24h"] == 0  # the comment at T0+30s is after B (T0+1s)
    assert ex["D"]["video_views_24h"] == 0 and ex["A"]["hour_of_day"] == 10
    assert all(r["sample_rate"] == 1.0 for r in ex.values())


def test_no_feature_uses_data_from_after_the_impression(world) -> None:
    landing, lake = world
    build_examples(lake, JoinerConfig(negative_rate=1.0))
    before = examples(lake)
    # Later events: inside label windows (labels may change) and long after (must change nothing).
    later = {
        # every one after all impressions of its user (user 2: T0, T0+5s; user 3: T0, T0+60s)
        "views": [view("late1", T0 + 6 * S, 2, 10, 100, 10_000, "r2"),
                  view("late2", T0 + 5 * 3_600 * S, 1, 10, 100, 100, None),
                  view("late3", T0 + 61 * S, 3, 13, 103, 100, None)],
        "interactions": [interaction("late4", T0 + 90 * S, 3, "share", 14, 104, "r3"),
                         interaction("late5", T0 + 3 * 3_600 * S, 1, "like", 10, 100, "r1")],
    }
    ingest(landing, lake, later, seq=2)
    report = build_examples(lake, JoinerConfig(negative_rate=1.0))
    assert report.built == {DAY: 6}  # the inputs changed, so the day was rebuilt
    after = examples(lake)
    for k in before:
        assert {c: after[k][c] for c in FEATURES} == {c: before[k][c] for c in FEATURES}, k
    # ...while the labels did see the new actions: the test is not vacuous
    assert after["C"]["played"] and after["C"]["engaged"] and not before["C"]["played"]
    assert after["F"]["shared"] and not before["F"]["shared"]

    # And history is live: an event *before* an impression does change its features.
    ingest(landing, lake, {"views": [view("early", T0 - 3_600 * S, 1, 50, 105, 100, None)]}, seq=3)
    build_examples(lake, JoinerConfig(negative_rate=1.0))
    assert examples(lake)["A"]["user_views_24h"] == before["A"]["user_views_24h"] + 1


def test_negative_downsampling_is_recorded_and_deterministic(tmp_path: Path) -> None:
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    landing.mkdir()
    imps = [impression(f"n{i}", T0 + i, 7, 1000 + i, 5, "rq", i) for i in range(3000)]
    views = [view(f"p{i}", T0 + i + 5 * S, 7, 1000 + i, 5, 10_000, "rq") for i in range(0, 3000, 10)]
    ingest(landing, lake, {"impressions": imps, "views": views}, seq=1)
    r = 0.3
    build_examples(lake, JoinerConfig(negative_rate=r))
    ex = examples(lake)
    positives = [e for e in ex.values() if e["engaged"]]
    negatives = [e for e in ex.values() if not e["engaged"]]
    assert len(positives) == 300 and all(e["sample_rate"] == 1.0 for e in positives)
    assert all(e["sample_rate"] == r for e in negatives)
    # 2700 negatives kept with p = 0.3: mean 810, sd 24
    assert 810 - 5 * 24 < len(negatives) < 810 + 5 * 24
    kept = set(ex)
    build_examples(lake, JoinerConfig(negative_rate=r), force=True)
    assert set(examples(lake)) == kept  # the same rows on a rebuild
    build_examples(lake, JoinerConfig(negative_rate=r, seed=1))  # new config: rebuilt
    assert set(examples(lake)) != kept


def test_unchanged_inputs_are_not_rebuilt_and_writes_are_atomic(world) -> None:
    landing, lake = world
    first = build_examples(lake)
    assert first.built and not first.skipped
    version = Lake(lake).store.version("examples")
    second = build_examples(lake)
    assert second.built == {} and second.skipped == [DAY]
    assert Lake(lake).store.version("examples") == version  # nothing committed
    # a late view landing in the next day's partition changes the day's label inputs
    ingest(landing, lake, {"views": [view("next", T0 + 20 * 3_600 * S, 9, 1, 1, 1, None)]}, seq=2,
           flushed_at_ms=T0 + 21 * 3_600 * S)
    assert (lake / "events" / "views" / "event_date=2026-11-03").is_dir()
    assert build_examples(lake).built.keys() == {DAY}
    # the date's rows were replaced in one commit: one file for the date, no leftovers named
    assert Lake(lake).store.version("examples") == version + 1
    assert len(Lake(lake).store.files("examples")) == 1


def test_reads_the_committed_snapshot_and_pinned_versions_reproduce_it(world) -> None:
    """The joiner reads the files the events tables' Delta versions name, records those versions
    in every examples file, and reading at them again (time travel) rebuilds the same examples."""
    landing, lake = world
    config = JoinerConfig(negative_rate=1.0)
    first = build_examples(lake, config)
    before = examples(lake)
    assert set(first.versions) == {"events/impressions", "events/views", "events/interactions"}
    assert all(v is not None and v >= 1 for v in first.versions.values())
    assert read_lake_versions(lake, DAY) == first.versions
    assert examples_lake_versions(lake) == {DAY: first.versions}

    # A copy of a committed file dropped into the partition, never committed (a dead writer's
    # leftover): a glob would count every play twice; the snapshot does not name it.
    part = lake / "events" / "views" / f"event_date={DAY}"
    shutil.copy(next(part.glob("part-*.parquet")), part / "part-ffffffffffffffff-c0.parquet")
    assert build_examples(lake, config).skipped == [DAY]  # the same committed inputs
    build_examples(lake, config, force=True)
    assert examples(lake) == before

    # A batch commits an earlier play of user 1: A's history changes...
    ingest(landing, lake, {"views": [view("early", T0 - 3_600 * S, 1, 50, 105, 100, None)]}, seq=2)
    second = build_examples(lake, config)
    assert second.built == {DAY: 6} and second.versions["events/views"] > first.versions["events/views"]
    assert second.versions["events/impressions"] == first.versions["events/impressions"]
    assert examples(lake)["A"]["user_views_24h"] == before["A"]["user_views_24h"] + 1
    assert read_lake_versions(lake, DAY) == second.versions
    # ...and pinning the first build's versions reads what it read.
    again = build_examples(lake, config, versions=first.versions)
    assert again.built == {DAY: 6} and again.versions == first.versions
    assert examples(lake) == before


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        JoinerConfig(label_window_s=2 * 86_400)
    with pytest.raises(ValueError):
        JoinerConfig(negative_rate=0)


def test_history_logged_by_the_server_is_what_the_example_trains_on(tmp_path: Path) -> None:
    """The model server logs the history counts it scored with; the example keeps those (what
    was served), while an impression without them gets them counted from the lake."""
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    landing.mkdir()
    logged = impression("L", T0, 1, 10, 100, "r1", 0)
    logged["served_features"] = {**served(0), "user_views_24h": 7, "user_engagements_24h": 2, "video_views_24h": 40}
    counted = impression("K", T0 + S, 1, 11, 101, "r1", 1)
    ingest(landing, lake, {"impressions": [logged, counted],
                           "views": [view("h1", T0 - 60 * S, 1, 12, 102, 500, None)], "interactions": []}, seq=1)
    build_examples(lake, JoinerConfig(negative_rate=1.0))
    ex = examples(lake)
    assert (ex["L"]["user_views_24h"], ex["L"]["user_engagements_24h"], ex["L"]["video_views_24h"]) == (7, 2, 40)
    assert (ex["K"]["user_views_24h"], ex["K"]["user_engagements_24h"], ex["K"]["video_views_24h"]) == (1, 0, 0)


def test_examples_are_a_delta_table_beside_the_events_on_disk_or_s3(tmp_path, lake_root) -> None:
    """The examples and their per-date fingerprints/versions are Delta tables under the lake's
    root (a folder or a bucket); a rebuild replaces the date's rows in one commit."""
    from tiktok_pipelines.training.joiner import has_examples

    landing = tmp_path / "landing"
    landing.mkdir()
    ingest(landing, lake_root, SCENARIO, seq=1)
    store = Lake(lake_root).store
    assert not has_examples(lake_root) and examples_lake_versions(lake_root) == {}
    first = build_examples(lake_root, JoinerConfig(negative_rate=1.0))
    assert first.built == {DAY: 6} and has_examples(lake_root)
    assert set(examples(lake_root)) == {"A", "B", "C", "D", "E", "F"}
    assert examples_lake_versions(lake_root) == {DAY: first.versions}
    assert store.table("examples").metadata().partition_columns == ["event_date"]
    version = store.version("examples")
    assert build_examples(lake_root, JoinerConfig(negative_rate=1.0)).skipped == [DAY]
    assert store.version("examples") == version
    build_examples(lake_root, JoinerConfig(negative_rate=1.0), force=True)
    assert store.version("examples") == version + 1  # one transaction replaced the date
    assert store.row_count("examples") == 6 and set(examples(lake_root)) == {"A", "B", "C", "D", "E", "F"}
