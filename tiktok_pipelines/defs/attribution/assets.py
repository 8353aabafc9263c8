"""Attribution marts as assets: ``marts.attribution_journeys`` (one row per ad conversion) and
``marts.attribution_credits`` (credits for seven models), with their checks.

What they hold and how they are built: ``tiktok_pipelines/attribution/marts.py`` (``build``, its SQL in
``marts.sql``); rules and model definitions: ``tiktok_pipelines/attribution`` and ``docs/attribution.md``.
This module only maps ``build``'s report to metadata and check results.
"""


import dagster as dg
import polars as pl

from tiktok_pipelines.attribution import marts
from tiktok_pipelines.attribution.journeys import Windows
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
        report = marts.build(con, windows, config.half_life_days)
    finally:
        con.close()
    yield from _journeys_events(report, config)
    yield from _credits_events(report)


def _journeys_events(report: marts.MartsReport, config: AttributionConfig):
    result = report.credits
    yield dg.MaterializeResult(
        asset_key=JOURNEYS_KEY,
        metadata={
            "dagster/row_count": report.journey_rows,
            "attributed": result.attributed_conversions,
            "unattributed": result.unattributed_conversions,
            "by_click": report.by_click, "by_view": report.by_view,
            "attributed_value_cents": result.attributed_value_cents,
            "windows": f"click {config.click_window_days} d, view {config.view_window_days} d (clicks first)",
        },
    )
    yield dg.AssetCheckResult(
        asset_key=JOURNEYS_KEY, check_name="every_conversion_has_one_row",
        passed=report.every_conversion_has_one_row,
        metadata={"raw_conversions": report.raw_conversions, "journey_rows": report.journey_rows,
                  "distinct_conversions": report.distinct_conversions},
    )


def _credits_events(report: marts.MartsReport):
    result = report.credits
    total_c, total_v = result.attributed_conversions, result.attributed_value_cents
    yield dg.MaterializeResult(
        asset_key=CREDITS_KEY,
        metadata={
            "dagster/row_count": report.credit_rows,
            "channel_credits": dg.MetadataValue.md(_markdown(report.channel_table())),
            "attributed_conversions": total_c,
            "null_journeys": int(result.paths.nulls.sum()),
            "markov_conversion_probability": float(result.markov.conversion_probability),
        },
    )
    yield dg.AssetCheckResult(
        asset_key=CREDITS_KEY, check_name="credits_sum_to_attributed", passed=not report.models_off,
        metadata={"attributed_conversions": total_c, "attributed_value_cents": total_v,
                  "models_off": dg.MetadataValue.json({m: list(d) for m, d in report.models_off.items()})},
    )
    yield dg.AssetCheckResult(
        asset_key=CREDITS_KEY, check_name="credits_non_negative", passed=not report.negative_rows,
        metadata={"negative_rows": dg.MetadataValue.json(report.negative_rows)},
    )
