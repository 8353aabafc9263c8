"""The attribution marts in the warehouse: journeys from ad touches to conversions, and credits for
seven models, written in one transaction and checked.

Reads ``raw.ad_events`` (touch = an ad impression (view) or click, channel = its ``placement``,
campaign = ``campaign_id``; conversion = ``event_type = 'conversion'`` with ``value_cents``;
journeys per ``(user_id, advertiser_id)``) and writes:

- ``marts.attribution_journeys``: one row per conversion (attributed or not, never dropped);
- ``marts.attribution_credits``: credited conversions and value per model, channel, campaign, day.

The statements are in ``sql/marts_*.sql`` beside this file. No Dagster here: ``defs/attribution/assets.py``
turns the ``MartsReport`` into the assets' metadata and check results.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import polars as pl

from tiktok_pipelines.attribution.credits import MODELS, JourneyCredits, credit_journeys
from tiktok_pipelines.attribution.journeys import Windows, ad_conversions_sql, ad_touches_sql, build_journeys
from tiktok_pipelines.sqlfiles import load_sql

# Float sums of fractional credits: a model "sums to" the total within this relative tolerance.
SUM_TOLERANCE = 1e-9


@dataclass
class MartsReport:
    """What one build wrote and what its checks found."""

    raw_conversions: int
    journey_rows: int
    distinct_conversions: int
    by_click: int
    by_view: int
    credit_rows: int
    credits: JourneyCredits
    # Models whose credits do not sum to the attributed totals: model -> (conversions off, value off).
    models_off: dict[str, tuple[float, float]] = field(default_factory=dict)
    negative_rows: dict[str, int] = field(default_factory=dict)  # model -> rows with a negative credit

    @property
    def every_conversion_has_one_row(self) -> bool:
        return self.journey_rows == self.raw_conversions and self.distinct_conversions == self.journey_rows

    def channel_table(self) -> pl.DataFrame:
        """Per channel, every model's credited conversions and Markov's removal effect."""
        markov = self.credits.markov
        re_ = pl.DataFrame({"channel": list(markov.channels), "markov_removal_effect": markov.removal_effect},
                           schema={"channel": pl.String, "markov_removal_effect": pl.Float64})
        return self.credits.channel_totals().join(re_, on="channel", how="left").fill_null(0.0)


def build(con: duckdb.DuckDBPyConnection, windows: Windows, half_life_days: float) -> MartsReport:
    """Rebuild both marts from ``raw.ad_events`` on the warehouse connection ``con`` (full refresh,
    one transaction), checkpoint, and check them."""
    tables = build_journeys(con, ad_touches_sql("raw.ad_events"), ad_conversions_sql("raw.ad_events"), windows)
    result = credit_journeys(con, tables, half_life_days)
    con.register("attr_credits_frame", result.credits.to_arrow())
    con.execute("BEGIN TRANSACTION")
    con.execute("CREATE SCHEMA IF NOT EXISTS marts")
    con.execute(load_sql(__package__, "marts_journeys", conversions=tables.conversions))
    con.execute(load_sql(__package__, "marts_credits"))
    con.execute("COMMIT")
    con.unregister("attr_credits_frame")

    counts = con.execute(load_sql(__package__, "marts_journey_counts")).fetchall()[0]
    sums = con.execute(load_sql(__package__, "marts_credit_sums"), [list(MODELS)]).fetchall()
    credit_rows = con.execute("SELECT count(*) FROM marts.attribution_credits").fetchall()[0][0]
    con.execute("CHECKPOINT")

    total_c, total_v = result.attributed_conversions, result.attributed_value_cents
    off = {m: (c - total_c, v - total_v) for m, c, v, _ in sums
           if abs(c - total_c) > SUM_TOLERANCE * max(1.0, total_c) or abs(v - total_v) > SUM_TOLERANCE * max(1.0, total_v)}
    return MartsReport(*counts, credit_rows=credit_rows, credits=result, models_off=off,
                       negative_rows={m: n for m, _, _, n in sums if n})
