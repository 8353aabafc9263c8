"""Journeys from touches to conversions, in DuckDB SQL (one pass, no loop per user).

Inputs are two relations (SQL ``SELECT``s or table names) sharing join keys (default
``user_id, advertiser_id``: a conversion only looks at the same user's touches of the same
advertiser's ads):

- touches: ``touch_id, <keys>, ts_ms BIGINT, channel VARCHAR, campaign_id BIGINT, is_click BOOLEAN``
- conversions: ``conversion_id, <keys>, ts_ms BIGINT, value_cents BIGINT`` (+ any other columns,
  carried into the journeys table)

Window rule (clicks first). For a conversion at time t:

1. its *click window* is [t - click window, t] (default 7 days) and its *view window*
   [t - view window, t] (default 1 day), both ends inclusive; touches after t never count;
2. if any click falls in the click window, the journey is exactly those clicks;
3. otherwise the journey is the impressions (views) in the view window;
4. otherwise the conversion is *unattributed*: kept in the journeys table (``attributed = false``,
   ``touches = 0``) and counted, never dropped, but credited to no channel.

Each conversion looks back on its own: a click two hours before two purchases is in both journeys
(as ad platforms report). Touches are ordered by time, then ``touch_id`` for ties.

Non-converting ("null") journeys, which only the Markov model uses: per key, the touches after
that key's last conversion (all of them if it never converted), windowed by the same rule anchored
at the last such touch — i.e. the journey a conversion right after that touch would have had.
Journeys still inside their windows when the data ends count as null until they convert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Windows:
    click_days: float = 7.0
    view_days: float = 1.0

    def __post_init__(self) -> None:
        if self.click_days < 0 or self.view_days < 0:
            raise ValueError("windows must be non-negative")

    @property
    def click_ms(self) -> int:
        return round(self.click_days * DAY_MS)

    @property
    def view_ms(self) -> int:
        return round(self.view_days * DAY_MS)


def ad_touches_sql(relation: str = "raw.ad_events") -> str:
    """Touches from the ad_events stream: impressions (views) and clicks; channel = placement."""
    return f"""
        SELECT event_id AS touch_id, user_id, advertiser_id, ts_ms,
               coalesce(placement, 'unknown') AS channel, campaign_id,
               event_type = 'click' AS is_click
        FROM {relation} WHERE event_type IN ('impression', 'click')"""


def ad_conversions_sql(relation: str = "raw.ad_events") -> str:
    """Conversions from the ad_events stream (value 0 where the conversion carries none)."""
    return f"""
        SELECT event_id AS conversion_id, user_id, advertiser_id, ts_ms,
               campaign_id AS reported_campaign_id, conversion_type,
               coalesce(value_cents, 0) AS value_cents
        FROM {relation} WHERE event_type = 'conversion'"""


@dataclass(frozen=True)
class JourneyTables:
    """Temp tables (on the connection that built them) holding the journeys."""

    conversions: str  # every conversion + attributed, touch_type, touches, path, campaigns, first/last touch
    touches: str  # conversion_id, touch_seq (1-based), touch_id, ts_ms, age_ms, channel, campaign_id, is_click
    null_paths: str  # path VARCHAR[], journeys BIGINT: non-converting journeys, aggregated
    null_touches: str  # channel, campaign_id, day, touches: the null journeys' touches by touch day


def build_journeys(con: duckdb.DuckDBPyConnection, touches: str, conversions: str,
                   windows: Windows = Windows(), keys: Sequence[str] = ("user_id", "advertiser_id"),
                   prefix: str = "attr") -> JourneyTables:
    """Build the journey temp tables on ``con`` (see the module docstring for the rules)."""
    if not keys:
        raise ValueError("at least one join key is needed")
    click, view = windows.click_ms, windows.view_ms
    widest = max(click, view)
    on = " AND ".join(f"t.{k} = c.{k}" for k in keys)
    key_list = ", ".join(keys)
    t = JourneyTables(*(f"{prefix}_{n}" for n in ("conversions", "touches", "null_paths", "null_touches")))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {prefix}_in_touches AS {touches}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {prefix}_in_conversions AS {conversions}")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {t.touches} AS
        WITH candidates AS (
            SELECT c.conversion_id, t.touch_id, t.ts_ms, c.ts_ms - t.ts_ms AS age_ms,
                   t.channel, t.campaign_id, t.is_click
            FROM {prefix}_in_conversions c JOIN {prefix}_in_touches t ON {on}
            WHERE t.ts_ms <= c.ts_ms AND t.ts_ms >= c.ts_ms - {widest}
              AND ((t.is_click AND t.ts_ms >= c.ts_ms - {click})
                   OR (NOT t.is_click AND t.ts_ms >= c.ts_ms - {view}))
        ), ranked AS (
            SELECT *, bool_or(is_click) OVER (PARTITION BY conversion_id) AS has_click FROM candidates
        )
        SELECT conversion_id,
               row_number() OVER (PARTITION BY conversion_id ORDER BY ts_ms, touch_id) AS touch_seq,
               touch_id, ts_ms, age_ms, channel, campaign_id, is_click
        FROM ranked WHERE is_click = has_click
        ORDER BY conversion_id, touch_seq""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {t.conversions} AS
        WITH j AS (
            SELECT conversion_id, count(*) AS touches, bool_or(is_click) AS clicked,
                   list(channel ORDER BY touch_seq) AS path, list(campaign_id ORDER BY touch_seq) AS campaigns,
                   min(ts_ms) AS first_touch_ms, max(ts_ms) AS last_touch_ms
            FROM {t.touches} GROUP BY conversion_id
        )
        SELECT c.*, CAST(epoch_ms(c.ts_ms) AS DATE) AS day,
               j.conversion_id IS NOT NULL AS attributed,
               CASE WHEN j.clicked THEN 'click' WHEN j.conversion_id IS NOT NULL THEN 'view' END AS touch_type,
               coalesce(j.touches, 0) AS touches, j.path, j.campaigns, j.first_touch_ms, j.last_touch_ms
        FROM {prefix}_in_conversions c LEFT JOIN j USING (conversion_id)
        ORDER BY c.ts_ms, c.conversion_id""")
    # Null journeys. GROUP BY + join rather than window functions, and single-touch journeys
    # (the common case) counted without an ordered list aggregate: both ~2x faster at 1M touches.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {prefix}_null_journey_touches AS
        WITH last_conv AS (
            SELECT {key_list}, max(ts_ms) AS last_conversion_ms FROM {prefix}_in_conversions GROUP BY ALL
        ), tail AS (
            SELECT t.* FROM {prefix}_in_touches t LEFT JOIN last_conv c ON {on}
            WHERE c.last_conversion_ms IS NULL OR t.ts_ms > c.last_conversion_ms
        ), anchor AS (
            SELECT {key_list}, max(ts_ms) AS anchor_ms, max(ts_ms) FILTER (WHERE is_click) AS last_click_ms
            FROM tail GROUP BY ALL
        )
        SELECT {", ".join(f"t.{k}" for k in keys)}, t.touch_id, t.ts_ms, t.channel, t.campaign_id
        FROM tail t JOIN anchor c ON {on}
        WHERE CASE WHEN c.last_click_ms >= c.anchor_ms - {click}
                   THEN t.is_click AND t.ts_ms >= c.anchor_ms - {click}
                   ELSE NOT t.is_click AND t.ts_ms >= c.anchor_ms - {view} END""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {t.null_paths} AS
        WITH sized AS (
            SELECT *, count(*) OVER (PARTITION BY {key_list}) AS n FROM {prefix}_null_journey_touches
        ), journeys AS (
            SELECT [channel] AS path, count(*) AS journeys FROM sized WHERE n = 1 GROUP BY channel
            UNION ALL
            SELECT path, count(*) FROM (
                SELECT list(channel ORDER BY ts_ms, touch_id) AS path FROM sized WHERE n > 1 GROUP BY {key_list}
            ) GROUP BY path
        )
        SELECT path, sum(journeys)::BIGINT AS journeys FROM journeys GROUP BY path ORDER BY path""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {t.null_touches} AS
        SELECT channel, campaign_id, CAST(epoch_ms(ts_ms) AS DATE) AS day, count(*) AS touches
        FROM {prefix}_null_journey_touches GROUP BY ALL ORDER BY ALL""")
    return t
