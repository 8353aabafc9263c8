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

from tiktok_pipelines.sqlfiles import load_sql, placeholders

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
    return load_sql(__package__, "ad_touches", relation=relation)


def ad_conversions_sql(relation: str = "raw.ad_events") -> str:
    """Conversions from the ad_events stream (value 0 where the conversion carries none)."""
    return load_sql(__package__, "ad_conversions", relation=relation)


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
    params = {
        "in_touches": f"{prefix}_in_touches", "in_conversions": f"{prefix}_in_conversions",
        "touches": t.touches, "conversions": t.conversions, "null_paths": t.null_paths,
        "null_touches": t.null_touches, "null_journey_touches": f"{prefix}_null_journey_touches",
        "on": on, "key_list": key_list, "touch_keys": ", ".join(f"t.{k}" for k in keys),
        "click_ms": click, "view_ms": view, "widest_ms": widest,
    }
    con.execute(f"CREATE OR REPLACE TEMP TABLE {params['in_touches']} AS {touches}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {params['in_conversions']} AS {conversions}")
    # In this order (attribution/sql/): each reads the tables the ones before it made. Null
    # journeys use GROUP BY + join rather than window functions: ~2x faster at 1M touches.
    for step in ("journey_touches", "journey_conversions", "null_journey_touches", "null_paths", "null_touches"):
        con.execute(load_sql(__package__, step, **{k: params[k] for k in placeholders(__package__, step)}))
    return t
