"""Attribution marts: journeys from ad touches to conversions, and credits for seven models.

Reads ``raw.ad_events`` in the warehouse (touch = an ad impression (view) or click, channel = its
``placement``, campaign = ``campaign_id``; conversion = ``event_type = 'conversion'`` with
``value_cents``; journeys per ``(user_id, advertiser_id)``) and writes, in one transaction:

- ``marts.attribution_journeys``: one row per conversion (attributed or not, never dropped);
- ``marts.attribution_credits``: credited conversions and value per model, channel, campaign, day.

Rules and model definitions: ``tiktok_pipelines/attribution`` and ``docs/attribution.md``.
"""


import dagster as dg
import polars as pl

from tiktok_pipelines.attribution.credits import MODELS, credit_journeys
from tiktok_pipelines.attribution.journeys import (
    Windows,
    ad_conversions_sql,
    ad_touches_sql,
    build_journeys,
)
from tiktok_pipelines.defs.ops.policies import (
    ANALYTICS_FRESHNESS,
    TRANSIENT_RETRY,
    retry_only_transient,
)
from tiktok_pipelines.defs.resources import PlatformStorage
from tiktok_pipelines.defs.warehouse.assets import WAREHOUSE_POOL
from tiktok_pipelines.warehouse import connect_warehouse

GROUP = "marts"
JOURNEYS_KEY = dg.AssetKey(["marts", "attribution_journeys"])
CREDITS_KEY = dg.AssetKey(["marts", "attribution_credits"])
WAREHOUSE_KEY = dg.AssetKey("warehouse_lake_tables")
# Float sums of fractional credits: a model "sums to" the total within this relative tolerance.
SUM_TOLERANCE = 1e-9


class AttributionConfig(dg.Config):
    """Windows and decay; defaults follow DESIGN.md (7-day click, 1-day view, 7-day half-life)."""

    click_window_days: float = 7.0
    view_window_days: float = 1.0
    half_life_days: float = 7.0


def _specs() -> list[dg.AssetSpec]:
    # Built in a function: module-level AssetSpecs would be collected as separate assets.
    return [
        dg.AssetSpec(
            JOURNEYS_KEY, group_name=GROUP, kinds={"duckdb"}, deps=[WAREHOUSE_KEY],
            freshness_policy=ANALYTICS_FRESHNESS,  # a mart: rebuilt hourly (docs/operations.md)
            description="One row per ad conversion: its journey (channels = placements, campaigns, in "
            "time order), touch count, whether clicks or views earned it, and whether any touch did "
            "(unattributed conversions are kept with attributed = false). Clicks in the 7-day click "
            "window first, else views in the 1-day view window.",
        ),
        dg.AssetSpec(
            CREDITS_KEY, group_name=GROUP, kinds={"duckdb"}, deps=[JOURNEYS_KEY],
            freshness_policy=ANALYTICS_FRESHNESS,
            description="Credited conversions and value (cents, DOUBLE: credits are fractional) per model "
            "(first_click, last_click, linear, position_based, time_decay, markov, shapley), channel, "
            "campaign and conversion day. Markov and Shapley channel totals are spread over (campaign, "
            "day) by each channel's linear credit.",
        ),
    ]


def _check_specs() -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec("every_conversion_has_one_row", asset=JOURNEYS_KEY,
                          description="Each conversion in raw.ad_events appears exactly once."),
        dg.AssetCheckSpec("credits_sum_to_attributed", asset=CREDITS_KEY,
                          description="Every model's credits sum to the attributed conversions and their value."),
        dg.AssetCheckSpec("credits_non_negative", asset=CREDITS_KEY, description="No credit is negative."),
    ]


def _markdown(frame: pl.DataFrame, fmt: str = "{:,.2f}") -> str:
    cols = frame.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.iter_rows():
        lines.append("| " + " | ".join(v if isinstance(v, str) else fmt.format(v) for v in row) + " |")
    return "\n".join(lines)


@dg.multi_asset(
    name="attribution_marts",
    specs=_specs(),
    check_specs=_check_specs(),
    pool=WAREHOUSE_POOL,
    description="Ad journeys and multi-touch attribution credits in warehouse.duckdb (marts schema).",
    retry_policy=TRANSIENT_RETRY,
)
@retry_only_transient
def attribution_marts(context: dg.AssetExecutionContext, config: AttributionConfig, storage: PlatformStorage):
    windows = Windows(click_days=config.click_window_days, view_days=config.view_window_days)
    con = connect_warehouse(storage.warehouse)
    try:
        tables = build_journeys(con, ad_touches_sql("raw.ad_events"), ad_conversions_sql("raw.ad_events"), windows)
        result = credit_journeys(con, tables, config.half_life_days)
        con.register("attr_credits_frame", result.credits.to_arrow())
        con.execute("BEGIN TRANSACTION")
        con.execute("CREATE SCHEMA IF NOT EXISTS marts")
        con.execute(f"""
            CREATE OR REPLACE TABLE marts.attribution_journeys AS
            SELECT conversion_id, user_id, advertiser_id, reported_campaign_id, conversion_type,
                   epoch_ms(ts_ms) AS ts, day, value_cents, attributed, touch_type, touches,
                   path AS channels, campaigns, array_to_string(path, ' > ') AS path,
                   epoch_ms(first_touch_ms) AS first_touch_ts, epoch_ms(last_touch_ms) AS last_touch_ts
            FROM {tables.conversions}""")
        con.execute("""
            CREATE OR REPLACE TABLE marts.attribution_credits AS
            SELECT model, channel, campaign_id, day, conversions::DOUBLE AS credited_conversions,
                   value_cents::DOUBLE AS credited_value_cents
            FROM attr_credits_frame ORDER BY model, channel, campaign_id, day""")
        con.execute("COMMIT")
        con.unregister("attr_credits_frame")

        n_conv, n_rows, n_distinct, n_click, n_view = con.execute("""
            SELECT (SELECT count(*) FROM raw.ad_events WHERE event_type = 'conversion'),
                   count(*), count(DISTINCT conversion_id),
                   count(*) FILTER (WHERE touch_type = 'click'), count(*) FILTER (WHERE touch_type = 'view')
            FROM marts.attribution_journeys""").fetchall()[0]
        sums = con.execute("""
            SELECT m.model, coalesce(sum(c.credited_conversions), 0), coalesce(sum(c.credited_value_cents), 0),
                   count(c.model) FILTER (WHERE c.credited_conversions < 0 OR c.credited_value_cents < 0)
            FROM unnest($models) AS m(model) LEFT JOIN marts.attribution_credits c USING (model)
            GROUP BY m.model ORDER BY m.model""", {"models": list(MODELS)}).fetchall()
        credit_rows = con.execute("SELECT count(*) FROM marts.attribution_credits").fetchall()[0][0]
        con.execute("CHECKPOINT")
    finally:
        con.close()

    total_c, total_v = result.attributed_conversions, result.attributed_value_cents
    off = {m: (c - total_c, v - total_v) for m, c, v, _ in sums
           if abs(c - total_c) > SUM_TOLERANCE * max(1.0, total_c) or abs(v - total_v) > SUM_TOLERANCE * max(1.0, total_v)}
    negative = {m: n for m, _, _, n in sums if n}

    totals = result.channel_totals()
    re = pl.DataFrame({"channel": list(result.markov.channels),
                       "markov_removal_effect": result.markov.removal_effect},
                      schema={"channel": pl.String, "markov_removal_effect": pl.Float64})
    table = totals.join(re, on="channel", how="left").fill_null(0.0)
    yield dg.MaterializeResult(
        asset_key=JOURNEYS_KEY,
        metadata={
            "dagster/row_count": n_rows,
            "attributed": result.attributed_conversions,
            "unattributed": result.unattributed_conversions,
            "by_click": n_click, "by_view": n_view,
            "attributed_value_cents": total_v,
            "windows": f"click {config.click_window_days} d, view {config.view_window_days} d (clicks first)",
        },
    )
    yield dg.AssetCheckResult(
        asset_key=JOURNEYS_KEY, check_name="every_conversion_has_one_row",
        passed=bool(n_rows == n_conv and n_distinct == n_rows),
        metadata={"raw_conversions": n_conv, "journey_rows": n_rows, "distinct_conversions": n_distinct},
    )
    yield dg.MaterializeResult(
        asset_key=CREDITS_KEY,
        metadata={
            "dagster/row_count": credit_rows,
            "channel_credits": dg.MetadataValue.md(_markdown(table)),
            "attributed_conversions": total_c,
            "null_journeys": int(result.paths.nulls.sum()),
            "markov_conversion_probability": float(result.markov.conversion_probability),
        },
    )
    yield dg.AssetCheckResult(
        asset_key=CREDITS_KEY, check_name="credits_sum_to_attributed", passed=not off,
        metadata={"attributed_conversions": total_c, "attributed_value_cents": total_v,
                  "models_off": dg.MetadataValue.json({m: list(d) for m, d in off.items()})},
    )
    yield dg.AssetCheckResult(
        asset_key=CREDITS_KEY, check_name="credits_non_negative", passed=not negative,
        metadata={"negative_rows": dg.MetadataValue.json(negative)},
    )
