"""The attribution marts materialised by Dagster on a tiny lake, checks included."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import pyarrow as pa
import pytest

from tests.dagster.conftest import resources_for
from tiktok_pipelines.defs.attribution.assets import (
    CREDITS_KEY,
    JOURNEYS_KEY,
    attribution_marts,
)
from tiktok_pipelines.defs.warehouse.assets import warehouse_lake_tables
from tiktok_pipelines.ingest.engine import Lake, events_schema, events_table

H = 3_600_000
T0 = 1_793_491_200_000  # 2026-11-01 00:00 UTC


def _write_ad_events(lake, day: str, rows: list[dict]) -> None:
    """Commit ``rows`` to the lake's ad_events table, one Delta transaction (as an ingest batch
    would): the warehouse reads committed table versions only."""
    schema = events_schema("ad_events")
    n = len(rows)
    lineage = {"_src_file": [f"test/{day}.ndjson"] * n, "_src_line": list(range(1, n + 1)),
               "_batch_id": [day.replace("-", "")] * n, "_payload_hash": [0] * n,
               "event_date": [dt.date.fromisoformat(day)] * n}
    cols = {f.name: pa.array(lineage[f.name] if f.name in lineage else [r.get(f.name) for r in rows], f.type)
            for f in schema}
    Lake(lake).store.commit(events_table("ad_events"), pa.table(cols, schema=schema), txn=f"test:{day}",
                            partition_by=["event_date"])


def _ev(eid, ts, user, event_type, campaign=1, placement=None, value=None, adv=1):
    return {"event_id": eid, "ts_ms": ts, "user_id": user, "event_type": event_type, "advertiser_id": adv,
            "campaign_id": campaign, "placement": placement,
            "conversion_type": "purchase" if event_type == "conversion" else None, "value_cents": value}


@pytest.fixture
def instance():
    with dg.instance_for_test(overrides={"concurrency": {"pools": {"default_limit": 1}}}) as inst:
        yield inst


def test_attribution_marts_materialise_with_passing_checks(tmp_path, instance):
    data = tmp_path / "data"
    lake = data / "lake"
    _write_ad_events(lake, "2026-11-01", [
        # user 1: feed view, search click, feed click, purchase $40 the next day -> journey search > feed (clicks)
        _ev("a1", T0 + 1 * H, 1, "impression", 1, "feed"),
        _ev("a2", T0 + 2 * H, 1, "impression", 2, "search"),
        _ev("a3", T0 + 2 * H + 5_000, 1, "click", 2, "search"),
        _ev("a4", T0 + 5 * H, 1, "click", 1, "feed"),
        # user 2: a splash view, then a conversion 20 h later (view window) with no value (a signup)
        _ev("b1", T0 + 3 * H, 2, "impression", 3, "splash"),
        # user 3: views only, never converts -> a null journey for Markov
        _ev("c1", T0 + 4 * H, 3, "impression", 1, "feed"),
        _ev("c2", T0 + 6 * H, 3, "impression", 2, "search"),
    ])
    _write_ad_events(lake, "2026-11-02", [
        _ev("a5", T0 + 26 * H, 1, "conversion", 1, value=4000),
        _ev("b2", T0 + 25 * H, 2, "conversion", 3, value=None),
        # user 4 converts with no touch at all: kept, unattributed
        _ev("d1", T0 + 30 * H, 4, "conversion", 1, value=999),
    ])
    result = dg.materialize([warehouse_lake_tables, attribution_marts], resources=resources_for(data),
                            instance=instance)
    assert result.success
    checks = {e.event_specific_data.check_name: e.event_specific_data.passed
              for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert checks == {"every_conversion_has_one_row": True, "credits_sum_to_attributed": True,
                      "credits_non_negative": True}

    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    journeys = {r[0]: r[1:] for r in con.sql(
        "SELECT conversion_id, attributed, touch_type, touches, path, day, value_cents "
        "FROM marts.attribution_journeys").fetchall()}
    d2 = dt.date(2026, 11, 2)
    assert journeys == {
        "a5": (True, "click", 2, "search > feed", d2, 4000),
        "b2": (True, "view", 1, "splash", d2, 0),
        "d1": (False, None, 0, None, d2, 999),
    }
    types = dict(con.sql("SELECT column_name, data_type FROM information_schema.columns "
                         "WHERE table_name = 'attribution_credits'").fetchall())
    assert types["credited_value_cents"] == "DOUBLE" and types["credited_conversions"] == "DOUBLE"
    sums = con.sql("SELECT model, sum(credited_conversions), sum(credited_value_cents) "
                   "FROM marts.attribution_credits GROUP BY model").fetchall()
    assert len(sums) == 7
    for model, c, v in sums:
        assert c == pytest.approx(2.0) and v == pytest.approx(4000.0), model
    # first click: search (campaign 2), last click: feed (campaign 1), each a full conversion on 11-02
    assert con.sql("SELECT channel, campaign_id, day, credited_conversions FROM marts.attribution_credits "
                   "WHERE model = 'first_click' ORDER BY channel").fetchall() == [
        ("search", 2, d2, 1.0), ("splash", 3, d2, 1.0)]
    con.close()

    mat = instance.get_latest_materialization_event(CREDITS_KEY).asset_materialization
    table = mat.metadata["channel_credits"].value
    assert table.startswith("| channel | first_click | last_click | linear | position_based | time_decay | markov | shapley")
    assert "| splash |" in table
    jm = instance.get_latest_materialization_event(JOURNEYS_KEY).asset_materialization
    assert jm.metadata["unattributed"].value == 1 and jm.metadata["attributed"].value == 2

    # A rerun rebuilds the same tables in place (full refresh, nothing appended twice)
    again = dg.materialize([attribution_marts], resources=resources_for(data), instance=instance)
    assert again.success
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    assert con.sql("SELECT count(*) FROM marts.attribution_journeys").fetchall()[0][0] == 3
    con.close()


def test_windows_come_from_run_config(tmp_path, instance):
    data = tmp_path / "data"
    _write_ad_events(data / "lake", "2026-11-01", [
        _ev("v", T0, 1, "impression", 1, "feed"),
        _ev("x", T0 + 36 * H, 1, "conversion", 1, value=100),  # 36 h after the view
    ])
    res = dg.materialize([warehouse_lake_tables], resources=resources_for(data), instance=instance)
    assert res.success

    def attributed(view_days: float) -> bool:
        r = dg.materialize([attribution_marts], resources=resources_for(data), instance=instance,
                           run_config={"ops": {"attribution_marts": {"config": {"view_window_days": view_days}}}})
        assert r.success
        con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
        try:
            return con.sql("SELECT attributed FROM marts.attribution_journeys").fetchall()[0][0]
        finally:
            con.close()

    assert attributed(1.0) is False
    assert attributed(2.0) is True


def test_attribution_on_a_small_simulated_world(tmp_path, instance):
    from tiktok_pipelines.ingest.engine import ingest_files
    from tiktok_pipelines.ingest.landing import list_landing_files
    from tiktok_pipelines.simulator import simulate

    data = tmp_path / "data"
    simulate(data, seed=3, users=300, videos=400, days=2, events_per_day=20_000,
             start_date=dt.date(2026, 11, 1), kuairec_dir=None, dirty_rate=0.0)
    ingest_files(list_landing_files(data / "landing"), landing_root=data / "landing", lake_root=data / "lake")
    result = dg.materialize([warehouse_lake_tables, attribution_marts], resources=resources_for(data),
                            instance=instance)
    assert result.success
    checks = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert len(checks) == 3 and all(c.passed for c in checks)
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    n_conv = con.sql("SELECT count(*) FROM raw.ad_events WHERE event_type = 'conversion'").fetchall()[0][0]
    attributed, clicks = con.sql("SELECT count(*) FILTER (WHERE attributed), count(*) FILTER (WHERE touch_type = 'click') "
                                 "FROM marts.attribution_journeys").fetchall()[0]
    assert n_conv > 0 and attributed > 0 and clicks > 0
    channels = {r[0] for r in con.sql("SELECT DISTINCT channel FROM marts.attribution_credits").fetchall()}
    assert channels <= {"feed", "splash", "dou_plus", "search"} and channels
    con.close()
