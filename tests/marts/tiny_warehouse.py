"""A tiny, hand-written warehouse for the marts tests: ``raw.*`` and ``dims.*`` tables with the
contract columns (schemas.py), plus ``content.video_tags`` (the tagger's table), in a real DuckDB
file. Every number the tests assert is set up here, with the arithmetic beside it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pyarrow as pa
from dagster import AssetKey

from tiktok_pipelines.dbt_like import Project, load_project
from tiktok_pipelines.ingest.engine import INGEST_LOG_SCHEMA, QUARANTINE_SCHEMA
from tiktok_pipelines.ingest.validate import sql_type
from tiktok_pipelines.schemas import CATALOG, STREAMS

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "dbt_like_models"
EXAMPLES = REPO / "sql" / "examples"
VIDEO_TAGS = "content.video_tags"

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
D0_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
D0 = dt.date(2026, 11, 1)
D1 = dt.date(2026, 11, 2)

_ARROW_SQL = {"string": "VARCHAR", "int64": "BIGINT", "float64": "DOUBLE", "bool": "BOOLEAN",
              "list<string>": "VARCHAR[]"}


def load() -> Project:
    return load_project(MODELS, external={"video_tags": (AssetKey("video_tags"), VIDEO_TAGS)})


def create_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Empty raw.*, dims.* and content.video_tags with the warehouse's columns and types."""
    for s in ("raw", "dims", "content"):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
    for stream, schema in STREAMS.items():
        cols = [f"{f.name} {sql_type(f)}" for f in schema.fields]
        cols += ["event_date DATE", "_src_file VARCHAR", "_src_line BIGINT", "_batch_id VARCHAR",
                 "_payload_hash UBIGINT"]
        con.execute(f"CREATE TABLE raw.{stream} ({', '.join(cols)})")
    for name, arrow_schema in (("quarantine", QUARANTINE_SCHEMA), ("ingest_log", INGEST_LOG_SCHEMA)):
        cols = [f"{f.name} {'VARCHAR' if str(f.type) == 'string' else 'BIGINT'}" for f in arrow_schema]
        con.execute(f"CREATE TABLE raw.{name} ({', '.join(cols)})")
    for name, table in CATALOG.items():
        cols = [f"{c} {_ARROW_SQL[t]}" for c, t in table.columns.items()]
        con.execute(f"CREATE TABLE dims.{name} ({', '.join(cols)})")
    con.execute(f"CREATE TABLE {VIDEO_TAGS} (video_id BIGINT, tags VARCHAR[], category VARCHAR, "
                "confidence DOUBLE, method VARCHAR)")


def insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict]) -> None:
    """Insert rows (dicts; missing columns are NULL) as one Arrow batch."""
    if not rows:
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    batch = pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows])  # noqa: F841 (used by name)
    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM batch")


def finish_events(con: duckdb.DuckDBPyConnection) -> None:
    """event_date = UTC day of ts_ms, as the lake partitions it."""
    for stream in STREAMS:
        con.execute(f"UPDATE raw.{stream} SET event_date = CAST(epoch_ms(ts_ms) AS DATE), "
                    f"_src_file = coalesce(_src_file, 'tiny.ndjson'), _src_line = coalesce(_src_line, 1)")


def ts(day: int, hour: float = 0.0, ms: int = 0) -> int:
    return D0_MS + day * DAY_MS + int(hour * HOUR_MS) + ms


# ------------------------------------------------------------------ the scenario

N_USERS = 80_000
# Campaign 100 (feed, CPM): the ads example on day 0, ad group 1001.
BIG_IMPRESSIONS = 200_000  # users 1..40,000 three times, 40,001..80,000 twice -> reach 80,000
COST_MICROS = 2_500  # per impression: 200,000 x 2,500 micros = $500
BIG_CLICKS = 3_000  # users 1..3,000
BIG_CONVERSIONS = 150  # users 1..150, purchases of $15 each = $2,250
PURCHASE_CENTS = 1_500


def build_tiny_warehouse(path: Path) -> None:
    con = duckdb.connect(str(path))
    try:
        create_schema(con)
        _dims(con)
        _feed(con)
        _money(con)
        _ads(con)
        insert(con, "raw.ingest_log", [{
            "batch_id": "b1", "file_key": "k1", "stream": "views", "rel_path": "views/x.ndjson",
            "size_bytes": 100, "mtime_ns": 1, "flushed_at_ms": ts(0, 12), "rows_read": 10, "rows_lake": 9,
            "rows_quarantine": 1, "rows_duplicate": 0, "ingested_at_ms": ts(0, 12, 1)}])
        insert(con, "raw.quarantine", [{
            "stream": "views", "src_file": "views/x.ndjson", "src_line": 3, "reason": "missing_field:user_id",
            "event_id": "v-bad", "raw_line": '{"event_id": "v-bad"}', "batch_id": "b1",
            "ingested_at_ms": ts(0, 12, 1)}])
        finish_events(con)
        con.execute("CHECKPOINT")
    finally:
        con.close()


def _dims(con: duckdb.DuckDBPyConnection) -> None:
    # 80,000 users: 1..10,000 are 18-24 women, the rest 25-34 men; all in the US.
    con.execute(f"""
        INSERT INTO dims.users
        SELECT i, CASE WHEN i <= 10000 THEN '18-24' ELSE '25-34' END,
               CASE WHEN i <= 10000 THEN 'female' ELSE 'male' END,
               'US', 'en', {ts(-400)}, 'medium'
        FROM range(1, {N_USERS + 1}) AS t(i)""")
    insert(con, "dims.creators", [
        # creator 1: individual streamer (keeps 30% of gifts)
        {"creator_id": 1, "user_id": 1, "creator_type": "individual", "guild_id": None, "guild_share": None,
         "is_live_streamer": True, "country": "US", "joined_at_ms": ts(-300)},
        # creator 2: guild streamer at a 50% contract
        {"creator_id": 2, "user_id": 2, "creator_type": "guild", "guild_id": 7, "guild_share": 0.50,
         "is_live_streamer": True, "country": "US", "joined_at_ms": ts(-300)},
        # creator 3: sells through videos
        {"creator_id": 3, "user_id": 3, "creator_type": "individual", "guild_id": None, "guild_share": None,
         "is_live_streamer": False, "country": "US", "joined_at_ms": ts(-300)},
        # creator 4: guild contract at 60%, outside the 40-55% range: gifts rejected
        {"creator_id": 4, "user_id": 4, "creator_type": "guild", "guild_id": 8, "guild_share": 0.60,
         "is_live_streamer": True, "country": "US", "joined_at_ms": ts(-300)},
        # creator 5: its video is promoted with DOU+
        {"creator_id": 5, "user_id": 5, "creator_type": "individual", "guild_id": None, "guild_share": None,
         "is_live_streamer": False, "country": "US", "joined_at_ms": ts(-300)},
    ])
    video = {"caption": "c", "hashtags": ["t"], "language": "en", "published_at_ms": ts(-10),
             "source": "generated", "source_video_id": None}
    insert(con, "dims.videos", [
        {**video, "video_id": 10, "creator_id": 1, "category": "food", "duration_ms": 20_000},
        # no catalog label: the tagger's prediction (dance) stands in for it
        {**video, "video_id": 20, "creator_id": 2, "category": None, "duration_ms": 30_000},
        {**video, "video_id": 30, "creator_id": 3, "category": "shopping", "duration_ms": 10_000},
        {**video, "video_id": 50, "creator_id": 5, "category": "travel", "duration_ms": 15_000},
    ])
    insert(con, VIDEO_TAGS, [
        {"video_id": 20, "tags": ["dance"], "category": "dance", "confidence": 0.9, "method": "model"},
        # the catalog label wins where there is one
        {"video_id": 10, "tags": ["x"], "category": "sports", "confidence": 0.6, "method": "model"},
    ])
    camp = {"advertiser_id": 1, "objective": "conversions", "cpm_micros": None, "flat_fee_cents": None,
            "target_age_band": None, "target_category": "food", "promoted_video_id": None}
    insert(con, "dims.campaigns", [
        # feed, CPM-priced; budget $20,000 over 30 days: 2 days seen -> $1,333 expected, $500 spent
        {**camp, "campaign_id": 100, "ad_format": "feed", "cpm_micros": COST_MICROS * 1000,
         "budget_cents": 2_000_000, "start_ms": ts(0), "end_ms": ts(30)},
        # feed campaign with free impressions and no clicks: the zero-denominator rows
        {**camp, "campaign_id": 101, "ad_format": "feed", "cpm_micros": 1_000_000,
         "budget_cents": 100_000, "start_ms": ts(0), "end_ms": ts(30)},
        # splash, flat fee $12,000.01 over 3 days (D0 gets the odd cent)
        {**camp, "campaign_id": 300, "ad_format": "splash", "flat_fee_cents": 1_200_001,
         "budget_cents": 1_200_001, "start_ms": ts(0), "end_ms": ts(3)},
        # DOU+ orders: $5 and $8,000 rejected, $10 and $7,000 accepted
        *[{**camp, "campaign_id": cid, "ad_format": "dou_plus", "flat_fee_cents": fee, "budget_cents": fee,
           "promoted_video_id": 50, "start_ms": ts(0), "end_ms": ts(5)}
          for cid, fee in ((200, 500), (201, 800_000), (202, 1_000), (203, 700_000))],
    ])


def _feed(con: duckdb.DuckDBPyConnection) -> None:
    # Creator 1 on D0: 4 plays of video 10 (20 s long) by users 1, 2, 3, 1.
    plays = [(1, 10_000, "foryou"), (2, 20_000, "foryou"), (3, 5_000, "search"), (1, 20_000, "following")]
    rows = [{"event_id": f"v{i}", "ts_ms": ts(0, 9, i), "user_id": u, "session_id": f"s{u}", "video_id": 10,
             "creator_id": 1, "watch_time_ms": w, "video_duration_ms": 20_000, "traffic_source": src}
            for i, (u, w, src) in enumerate(plays)]
    # user 4 watches video 20 (no catalog category; tagged dance); on D1 user 5 watches video 50
    rows.append({"event_id": "v20", "ts_ms": ts(0, 10), "user_id": 4, "session_id": "s4", "video_id": 20,
                 "creator_id": 2, "watch_time_ms": 30_000, "video_duration_ms": 30_000,
                 "traffic_source": "foryou"})
    rows.append({"event_id": "v50", "ts_ms": ts(1, 10), "user_id": 5, "session_id": "s5", "video_id": 50,
                 "creator_id": 5, "watch_time_ms": 1_000, "video_duration_ms": 15_000,
                 "traffic_source": "profile"})
    # creator 3 on D1: 100 plays of video 30 (10 s) by users 100..199, half of them to the end
    rows += [{"event_id": f"v3-{u}", "ts_ms": ts(1, 12, u), "user_id": u, "session_id": f"s{u}", "video_id": 30,
              "creator_id": 3, "watch_time_ms": 10_000 if u % 2 else 4_000, "video_duration_ms": 10_000,
              "traffic_source": "search"} for u in range(100, 200)]
    insert(con, "raw.views", rows)
    acts = [("like", 1), ("like", 2), ("comment", 3), ("share", 1), ("follow", 2), ("follow", 3), ("follow", 2)]
    insert(con, "raw.interactions", [
        {"event_id": f"i{i}", "ts_ms": ts(0, 11, i), "user_id": u, "event_type": t, "video_id": 10,
         "creator_id": 1, "comment_text": "nice" if t == "comment" else None,
         "share_channel": "im" if t == "share" else None}
        for i, (t, u) in enumerate(acts)])


def _money(con: duckdb.DuckDBPyConnection) -> None:
    gift = {"stream_id": "live1", "gift_type": "rose", "gift_count": 1}
    insert(con, "raw.live_gifts", [
        # $100 to individual creator 1, in two gifts on D0
        {**gift, "event_id": "g1", "ts_ms": ts(0, 20), "user_id": 10, "creator_id": 1, "value_cents": 6_000},
        {**gift, "event_id": "g2", "ts_ms": ts(0, 21), "user_id": 11, "creator_id": 1, "value_cents": 4_000},
        # $100 to guild creator 2 at 50%
        {**gift, "event_id": "g3", "ts_ms": ts(0, 20), "user_id": 12, "creator_id": 2, "value_cents": 10_000},
        # $25 to creator 4, whose 60% contract is out of range
        {**gift, "event_id": "g4", "ts_ms": ts(0, 20), "user_id": 13, "creator_id": 4, "value_cents": 2_500},
    ])
    insert(con, "raw.orders", [
        # a $200 order through creator 3's video
        {"event_id": "o1", "ts_ms": ts(0, 15), "user_id": 20, "order_id": "ord1", "creator_id": 3,
         "video_id": 30, "product_id": 3001, "quantity": 1, "amount_cents": 20_000, "currency": "USD",
         "source": "video"},
    ])


def _ads(con: duckdb.DuckDBPyConnection) -> None:
    # Campaign 100, ad group 1001, D0: 200,000 impressions at 2,500 micros; watch times cycle
    # 7 s, 3 s, 1 s, 1 s -> 100,000 two-second and 50,000 six-second views.
    con.execute(f"""
        INSERT INTO raw.ad_events BY NAME
        SELECT 'imp-' || i AS event_id, {ts(0, 1)} + i AS ts_ms,
               CASE WHEN i < 120000 THEN i % 40000 + 1 ELSE 40000 + (i - 120000) % 40000 + 1 END AS user_id,
               'impression' AS event_type, 1 AS advertiser_id, 100 AS campaign_id, 1001 AS ad_group_id,
               10001 AS creative_id, 'feed' AS placement, {COST_MICROS} AS cost_micros,
               CASE i % 4 WHEN 0 THEN 7000 WHEN 1 THEN 3000 ELSE 1000 END AS watch_time_ms
        FROM range({BIG_IMPRESSIONS}) AS t(i)""")
    # 3,000 clicks (users 1..3,000) and 150 purchases (users 1..150) of $15 after them
    con.execute(f"""
        INSERT INTO raw.ad_events BY NAME
        SELECT 'clk-' || u AS event_id, {ts(0, 6)} + u AS ts_ms, u AS user_id, 'click' AS event_type,
               1 AS advertiser_id, 100 AS campaign_id, 1001 AS ad_group_id, 10001 AS creative_id,
               'feed' AS placement
        FROM range(1, {BIG_CLICKS + 1}) AS t(u)""")
    con.execute(f"""
        INSERT INTO raw.ad_events BY NAME
        SELECT 'cnv-' || u AS event_id, {ts(0, 8)} + u AS ts_ms, u AS user_id, 'conversion' AS event_type,
               1 AS advertiser_id, 100 AS campaign_id, 'purchase' AS conversion_type,
               {PURCHASE_CENTS} AS value_cents
        FROM range(1, {BIG_CONVERSIONS + 1}) AS t(u)""")
    base = {"advertiser_id": 1, "event_type": "impression", "watch_time_ms": 1_500}
    insert(con, "raw.ad_events", [
        # campaign 101, ad group 1011, D0: 10 free impressions, no click, no conversion
        *[{**base, "event_id": f"z{i}", "ts_ms": ts(0, 2, i), "user_id": 50_000 + i, "campaign_id": 101,
           "ad_group_id": 1011, "creative_id": 1, "placement": "feed", "cost_micros": 0} for i in range(10)],
        # campaign 101, D1: a conversion with no touch before it -> ad_group_id NULL, no impressions
        {"event_id": "z-conv", "ts_ms": ts(1, 1), "user_id": 70_000, "advertiser_id": 1,
         "event_type": "conversion", "campaign_id": 101, "conversion_type": "signup"},
        # campaign 300 (splash), D0: 30 impressions in ad group 3001, 10 in 3002; none on D1
        *[{**base, "event_id": f"s{i}", "ts_ms": ts(0, 3, i), "user_id": 60_000 + i, "campaign_id": 300,
           "ad_group_id": 3001 if i < 30 else 3002, "creative_id": 2, "placement": "splash"}
          for i in range(40)],
    ])
