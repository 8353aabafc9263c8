"""Credits per model, channel, campaign and day from timestamped journeys.

Touch-level models (first click, last click, linear, position-based, time decay) weigh every
touch of every attributed journey (:mod:`.rules`); a touch's credit goes to its channel and
campaign, on the day of the conversion it helped (UTC).

Channel-level models (Markov, Shapley) give channel totals only: they are fitted on the journeys
aggregated to paths (converting journeys plus the null journeys of :mod:`.journeys`). Each
channel's total is then allocated down to (campaign, day) in proportion to that channel's
*linear* credit in each (campaign, day) (conversions by linear conversion credit, value by linear
value credit), so every channel's cells sum exactly to its Markov / Shapley total and every model
sums to the attributed conversions and value. Fallbacks, for channels with no linear credit of
that kind: value follows linear conversion credit; and a channel that Markov credits although it
never touched a converting journey (it only appears upstream of conversions in the chain, via
null journeys) is allocated by its touches in null journeys, by touch day.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl

from tiktok_pipelines.attribution.journeys import JourneyTables
from tiktok_pipelines.attribution.markov import MarkovResult, markov_attribution
from tiktok_pipelines.attribution.paths import Paths
from tiktok_pipelines.attribution.rules import RULE_MODELS, rule_weights
from tiktok_pipelines.attribution.shapley import path_shapley

CHANNEL_MODELS = ("markov", "shapley")
MODELS = RULE_MODELS + CHANNEL_MODELS
KEYS = ["channel", "campaign_id", "day"]


@dataclass(frozen=True)
class JourneyCredits:
    credits: pl.DataFrame  # model, channel, campaign_id, day, conversions, value_cents (Float64)
    paths: Paths  # converting and null journeys aggregated to paths
    markov: MarkovResult
    attributed_conversions: int
    attributed_value_cents: int
    unattributed_conversions: int

    def channel_totals(self) -> pl.DataFrame:
        """Conversions credited per channel (rows) and model (columns)."""
        wide = (self.credits.group_by("channel", "model").agg(pl.col("conversions").sum())
                .pivot(on="model", index="channel", values="conversions"))
        missing = [pl.lit(0.0).alias(m) for m in MODELS if m not in wide.columns]
        return wide.with_columns(missing).select("channel", *MODELS).fill_null(0.0).sort("channel")


def touch_level_credits(touches: pl.DataFrame, half_life_days: float = 7.0) -> pl.DataFrame:
    """Rule-model credits from journey touches sorted by (conversion_id, touch_seq).

    ``touches`` columns: conversion_id, touch_seq (1 = first), age_ms, channel, campaign_id, day,
    value_cents (the conversion's). Returns model, channel, campaign_id, day, conversions, value_cents.
    """
    schema = {"model": pl.String, "channel": pl.String, "campaign_id": pl.Int64, "day": pl.Date,
              "conversions": pl.Float64, "value_cents": pl.Float64}
    if touches.height == 0:
        return pl.DataFrame(schema=schema)
    seq = touches["touch_seq"].to_numpy()
    starts = np.flatnonzero(seq == 1)
    if len(starts) == 0 or starts[0] != 0:
        raise ValueError("touches must be sorted by conversion_id, touch_seq with touch_seq starting at 1")
    offsets = np.append(starts, len(seq))
    age = touches["age_ms"].to_numpy()
    value = touches["value_cents"].to_numpy().astype(np.float64)
    base = touches.select(KEYS)
    frames = []
    for m in RULE_MODELS:
        w = rule_weights(m, offsets, age_ms=age, half_life_days=half_life_days)
        frames.append(base.with_columns(model=pl.lit(m), conversions=pl.Series(w), value_cents=pl.Series(w * value)))
    out = (pl.concat(frames).group_by("model", *KEYS).agg(pl.col("conversions").sum(), pl.col("value_cents").sum())
           .filter((pl.col("conversions") != 0) | (pl.col("value_cents") != 0)))
    return out.select(list(schema)).cast(schema)


def allocate_channel_totals(model: str, channels: tuple[str, ...], conv_total: np.ndarray,
                            value_total: np.ndarray, linear: pl.DataFrame,
                            null_touches: pl.DataFrame) -> pl.DataFrame:
    """Spread per-channel totals over (campaign, day) by linear credit (see the module docstring)."""
    lin = linear.select(*KEYS, lc=pl.col("conversions"), lv=pl.col("value_cents"))
    nt = null_touches.select(*KEYS, nt=pl.col("touches").cast(pl.Float64))
    basis = (lin.join(nt, on=KEYS, how="full", coalesce=True).fill_null(0.0)
             .with_columns(lc_tot=pl.col("lc").sum().over("channel"), lv_tot=pl.col("lv").sum().over("channel")))
    basis = basis.with_columns(
        bc=pl.when(pl.col("lc_tot") > 0).then(pl.col("lc")).otherwise(pl.col("nt")),
        bv=pl.when(pl.col("lv_tot") > 0).then(pl.col("lv"))
        .when(pl.col("lc_tot") > 0).then(pl.col("lc")).otherwise(pl.col("nt")),
    ).with_columns(sc=pl.col("bc") / pl.col("bc").sum().over("channel"),
                   sv=pl.col("bv") / pl.col("bv").sum().over("channel"))
    totals = pl.DataFrame({"channel": list(channels), "tc": conv_total, "tv": value_total},
                          schema={"channel": pl.String, "tc": pl.Float64, "tv": pl.Float64})
    covered = set(basis["channel"].unique().to_list())
    for c, tc, tv in totals.iter_rows():
        if (tc > 0 or tv > 0) and c not in covered:
            raise ValueError(f"{model}: channel {c!r} has credit but no touches to allocate it to")
    out = basis.join(totals, on="channel").with_columns(
        conversions=(pl.col("tc") * pl.col("sc")).fill_nan(0.0),
        value_cents=(pl.col("tv") * pl.col("sv")).fill_nan(0.0),
    ).filter((pl.col("conversions") != 0) | (pl.col("value_cents") != 0))
    return out.select(pl.lit(model).alias("model"), *KEYS, "conversions", "value_cents")


def credit_journeys(con: duckdb.DuckDBPyConnection, tables: JourneyTables,
                    half_life_days: float = 7.0) -> JourneyCredits:
    """All seven models' credits per (model, channel, campaign_id, day) from built journeys."""
    touches = con.sql(f"""
        SELECT t.conversion_id, t.touch_seq, t.age_ms, t.channel, t.campaign_id, c.day, c.value_cents
        FROM {tables.touches} t JOIN {tables.conversions} c USING (conversion_id)
        ORDER BY t.conversion_id, t.touch_seq""").pl()
    credits = touch_level_credits(touches, half_life_days)

    conv_paths = con.sql(f"""
        SELECT path, count(*) AS n, sum(value_cents)::DOUBLE AS v FROM {tables.conversions}
        WHERE attributed GROUP BY path""").fetchall()
    null_paths = con.sql(f"SELECT path, journeys FROM {tables.null_paths}").fetchall()
    paths = Paths.from_sequences(
        [p for p, _, _ in conv_paths] + [p for p, _ in null_paths],
        [n for _, n, _ in conv_paths] + [0] * len(null_paths),
        [v for _, _, v in conv_paths] + [0] * len(null_paths),
        [0] * len(conv_paths) + [n for _, n in null_paths],
    ).aggregated()
    mk = markov_attribution(paths)
    sh_conv, sh_value = path_shapley(paths)
    linear = credits.filter(pl.col("model") == "linear")
    null_touches = con.sql(f"SELECT * FROM {tables.null_touches}").pl()
    if null_touches.height == 0:
        null_touches = pl.DataFrame(schema={"channel": pl.String, "campaign_id": pl.Int64, "day": pl.Date,
                                            "touches": pl.Int64})
    channel_level = [allocate_channel_totals("markov", paths.channels, mk.conversions, mk.value, linear, null_touches),
                     allocate_channel_totals("shapley", paths.channels, sh_conv, sh_value, linear, null_touches)]
    all_credits = pl.concat([credits, *[f.cast(credits.schema) for f in channel_level]]).sort("model", *KEYS)
    n_attr, value_attr, n_unattr = con.sql(f"""
        SELECT count(*) FILTER (WHERE attributed), coalesce(sum(value_cents) FILTER (WHERE attributed), 0),
               count(*) FILTER (WHERE NOT attributed) FROM {tables.conversions}""").fetchall()[0]
    return JourneyCredits(all_credits, paths, mk, int(n_attr), int(value_attr), int(n_unattr))
