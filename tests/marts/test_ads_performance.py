"""Ads performance, conversions credit and suggestions (issue 5, part 6) on the tiny warehouse."""

from __future__ import annotations

import shutil
from decimal import Decimal

import duckdb
import pytest

from tests.marts.tiny_warehouse import D0, D1, MODELS, load
from tiktok_pipelines.dbt_like import load_project


def _row(con, campaign_id: int, ad_group_id: int | None, day) -> dict:
    group = "ad_group_id IS NULL" if ad_group_id is None else f"ad_group_id = {ad_group_id}"
    rows = con.sql(f"SELECT * FROM marts.ad_performance_daily WHERE campaign_id = {campaign_id} AND {group} "
                   f"AND day = DATE '{day}'").pl().to_dicts()
    assert len(rows) == 1, rows
    return rows[0]


def test_the_issue_example(con) -> None:
    """$500 spend, 200,000 impressions, 3,000 clicks, 150 conversions, $2,250 purchases, reach 80,000."""
    r = _row(con, 100, 1001, D0)
    assert (r["spend_usd"], r["spend_micros"]) == (Decimal("500.000000"), 500_000_000)
    assert (r["impressions"], r["reach"], r["clicks"], r["conversions"], r["purchases"]) == (
        200_000, 80_000, 3_000, 150, 150)
    assert r["purchase_value_cents"] == 225_000
    assert r["cpm_usd"] == pytest.approx(2.50, rel=1e-12)
    assert r["ctr"] == pytest.approx(0.015, rel=1e-12)
    assert r["cvr"] == pytest.approx(0.05, rel=1e-12)
    assert round(r["cpa_usd"], 3) == 3.333 and r["cpa_usd"] == pytest.approx(500 / 150, rel=1e-12)
    assert r["roas"] == pytest.approx(4.5, rel=1e-12)
    assert r["frequency"] == pytest.approx(2.5, rel=1e-12)
    assert r["cpc_usd"] == pytest.approx(500 / 3000, rel=1e-12)
    # watch times cycle 7 s, 3 s, 1 s, 1 s
    assert (r["views_2s"], r["views_6s"], r["view_rate_2s"], r["view_rate_6s"]) == (100_000, 50_000, 0.5, 0.25)
    assert r["avg_watch_time_ms"] == pytest.approx(3_000.0)
    assert (r["ad_format"], r["advertiser_id"]) == ("feed", 1)


def test_zero_denominators_give_null(con) -> None:
    # free impressions, no click, no conversion: CTR and CPM are 0; CPC, CVR, CPA and ROAS have no denominator
    r = _row(con, 101, 1011, D0)
    assert (r["impressions"], r["clicks"], r["spend_micros"], r["ctr"], r["cpm_usd"]) == (10, 0, 0, 0.0, 0.0)
    assert r["cpc_usd"] is None and r["cvr"] is None and r["cpa_usd"] is None and r["roas"] is None
    # a conversion with no touch: no impressions, so CTR, CPM, frequency and view rates are NULL too
    r = _row(con, 101, None, D1)
    assert (r["impressions"], r["reach"], r["conversions"]) == (0, 0, 1)
    for col in ("ctr", "cpm_usd", "frequency", "cpc_usd", "cvr", "roas", "view_rate_2s", "avg_watch_time_ms"):
        assert r[col] is None, col
    assert r["cpa_usd"] == 0.0  # spend 0 / 1 conversion


def test_no_mart_holds_infinity_or_nan(con) -> None:
    """DuckDB 2.0 gives inf for x / 0.0: every ratio must guard its denominator."""
    cols = con.execute("SELECT table_schema, table_name, column_name FROM information_schema.columns "
                       "WHERE table_schema IN ('intermediate', 'marts') AND data_type IN ('DOUBLE', 'FLOAT')").fetchall()
    assert len(cols) > 20
    for schema, table, col in cols:
        bad = con.execute(f'SELECT count(*) FROM {schema}.{table} WHERE isinf("{col}") OR isnan("{col}")').fetchall()
        assert bad == [(0,)], (table, col)


def test_flat_fees_spread_over_flight_days_and_ad_groups_to_the_micro(con) -> None:
    # splash $12,000.01 over 3 days: D0 $4,000.01, D1 and D2 $4,000.00; D2 is after the data.
    fees = con.sql("SELECT day, fee_day_cents FROM intermediate.int_ad_flat_fees_daily WHERE campaign_id = 300 "
                   "ORDER BY day").fetchall()
    assert fees == [(D0, 400_001), (D1, 400_000)]
    # D0: 30 impressions in 3001, 10 in 3002 -> 3/4 and 1/4 of 4,000,010,000 micros; D1: no delivery
    spend = con.sql("SELECT ad_group_id, day, spend_micros FROM marts.ad_performance_daily WHERE campaign_id = 300 "
                    "ORDER BY day, ad_group_id").fetchall()
    assert spend == [(3001, D0, 3_000_007_500), (3002, D0, 1_000_002_500), (None, D1, 4_000_000_000)]
    # DOU+: accepted orders spread over their 5 days ($10 -> 200 cents a day); rejected ones cost nothing
    dou = dict(con.sql("SELECT campaign_id, sum(spend_micros) FROM marts.ad_performance_daily "
                       "WHERE ad_format = 'dou_plus' GROUP BY 1").fetchall())
    assert dou == {202: 2 * 200 * 10_000, 203: 2 * 140_000 * 10_000}


def test_conversions_are_credited_to_the_last_touch_ad_group(con) -> None:
    got = con.sql("SELECT campaign_id, ad_group_id, attributed_by, count(*) FROM intermediate.int_ad_conversions "
                  "GROUP BY ALL ORDER BY ALL").fetchall()
    assert got == [(100, 1001, "click", 150), (101, None, None, 1)]


def test_suggestions_carry_their_evidence(con) -> None:
    rows = {(r["campaign_id"], r["suggestion_type"], r["subject"]): r
            for r in con.sql("SELECT * FROM marts.ad_suggestions").pl().to_dicts()}
    seg = rows[(100, "segment_outperforms", "segment=18-24/female")]
    # users 1..10,000 are 18-24 women: 30,000 impressions, all 3,000 clicks
    assert (seg["impressions"], seg["clicks"], seg["metric_value"]) == (30_000, 3_000, 0.1)
    assert seg["benchmark_value"] == pytest.approx(0.015)
    assert "10.00%" in seg["suggestion"] and "1.50%" in seg["suggestion"]
    # budget $20,000 over 30 days, 2 days seen -> $1,333.33 expected, $500 spent: pace 0.375
    pace = rows[(100, "budget_underpacing", "campaign")]
    assert pace["metric_value"] == pytest.approx(0.375) and pace["spend_usd"] == 500.0
    assert not any(k[1] == "cpa_above_target" for k in rows)  # CPA $3.33 is under the $40 default


def test_cpa_target_comes_from_the_ad_targets_seed(built, tmp_path) -> None:
    """A per-campaign target below the campaign's CPA makes a cpa_above_target suggestion."""
    models = tmp_path / "dbt_like_models"
    shutil.copytree(MODELS, models)
    (models / "seeds" / "ad_targets.csv").write_text(
        "campaign_id,target_cpa_usd,target_roas,note\n100,3.0,5.0,test\n")
    db = tmp_path / "w.duckdb"
    shutil.copyfile(built.path, db)
    project = load_project(models, external=load().external)
    con = duckdb.connect(str(db))
    try:
        project.build(con, select=["ad_targets", "ad_suggestions"])
        got = con.sql("SELECT suggestion_type, metric_value, benchmark_value, conversions FROM marts.ad_suggestions "
                      "WHERE campaign_id = 100 AND subject = 'campaign' ORDER BY 1").fetchall()
    finally:
        con.close()
    assert [g[0] for g in got] == ["budget_underpacing", "cpa_above_target", "roas_below_target"]
    assert got[1][1:] == (pytest.approx(500 / 150), 3.0, 150)
    assert got[2][1:3] == (pytest.approx(4.5), 5.0)
