"""attribution.marts.build without Dagster: a warehouse whose raw.ad_events is a plain table."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from tiktok_pipelines.attribution.credits import MODELS
from tiktok_pipelines.attribution.journeys import Windows
from tiktok_pipelines.attribution.marts import build

H = 3_600_000
T0 = 1_793_491_200_000  # 2026-11-01 00:00 UTC
COLUMNS = ("event_id", "ts_ms", "user_id", "event_type", "advertiser_id", "campaign_id", "placement",
           "conversion_type", "value_cents")


def _warehouse(path, rows: list[tuple]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA raw")
    con.execute("CREATE TABLE raw.ad_events (event_id VARCHAR, ts_ms BIGINT, user_id BIGINT, event_type VARCHAR, "
                "advertiser_id BIGINT, campaign_id BIGINT, placement VARCHAR, conversion_type VARCHAR, "
                "value_cents BIGINT)")
    con.executemany(f"INSERT INTO raw.ad_events VALUES ({', '.join('?' * len(COLUMNS))})", rows)
    return con


ROWS = [
    # user 1: a feed view, a search click, a feed click, then a $40 purchase: journey search > feed (clicks)
    ("a1", T0 + 1 * H, 1, "impression", 1, 1, "feed", None, None),
    ("a2", T0 + 2 * H, 1, "click", 1, 2, "search", None, None),
    ("a3", T0 + 5 * H, 1, "click", 1, 1, "feed", None, None),
    ("a4", T0 + 26 * H, 1, "conversion", 1, 1, None, "purchase", 4000),
    # user 2: a splash view, a signup 20 h later (view window, no value)
    ("b1", T0 + 3 * H, 2, "impression", 1, 3, "splash", None, None),
    ("b2", T0 + 23 * H, 2, "conversion", 1, 3, None, "signup", None),
    # user 3 converts with no touch: kept, unattributed; user 4 only views (a null journey)
    ("c1", T0 + 30 * H, 3, "conversion", 1, 1, None, "purchase", 999),
    ("d1", T0 + 4 * H, 4, "impression", 1, 1, "feed", None, None),
]


def test_build_writes_both_marts_and_checks_them(tmp_path) -> None:
    con = _warehouse(tmp_path / "w.duckdb", ROWS)
    report = build(con, Windows(), half_life_days=7.0)
    assert (report.raw_conversions, report.journey_rows, report.distinct_conversions) == (3, 3, 3)
    assert report.every_conversion_has_one_row
    assert (report.by_click, report.by_view) == (1, 1)
    assert report.credits.attributed_conversions == 2 and report.credits.unattributed_conversions == 1
    assert report.models_off == {} and report.negative_rows == {}
    assert report.credit_rows == con.sql("SELECT count(*) FROM marts.attribution_credits").fetchall()[0][0] > 0
    journeys = dict(con.sql("SELECT conversion_id, path FROM marts.attribution_journeys").fetchall())
    assert journeys == {"a4": "search > feed", "b2": "splash", "c1": None}
    assert con.sql("SELECT day FROM marts.attribution_journeys WHERE conversion_id = 'a4'").fetchall() == [
        (dt.date(2026, 11, 2),)]
    sums = con.sql("SELECT model, sum(credited_conversions), sum(credited_value_cents) FROM marts.attribution_credits "
                   "GROUP BY model").fetchall()
    assert {m for m, _, _ in sums} == set(MODELS)
    for model, c, v in sums:
        assert c == pytest.approx(2.0) and v == pytest.approx(4000.0), model
    table = report.channel_table()
    assert table.columns[0] == "channel" and table.columns[-1] == "markov_removal_effect"
    assert set(table["channel"]) == {"feed", "search", "splash"}

    # a rebuild replaces both tables (nothing appended twice)
    again = build(con, Windows(), half_life_days=7.0)
    assert again.journey_rows == 3 and again.credit_rows == report.credit_rows
    con.close()


def test_the_checks_see_a_conversion_the_journeys_lost(tmp_path) -> None:
    """A conversion whose event_id repeats: one journey row per conversion_id, so the raw count and
    the journeys' disagree and every_conversion_has_one_row fails."""
    con = _warehouse(tmp_path / "w.duckdb", ROWS + [("c1", T0 + 31 * H, 5, "conversion", 1, 1, None, "purchase", 1)])
    report = build(con, Windows(view_days=0.5), half_life_days=7.0)
    assert report.raw_conversions == 4
    assert not report.every_conversion_has_one_row
    # with a half-day view window user 2's signup (20 h after the view) is unattributed
    assert con.sql("SELECT attributed FROM marts.attribution_journeys WHERE conversion_id = 'b2'").fetchall() == [
        (False,)]
    con.close()
