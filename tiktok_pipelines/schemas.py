"""The event contract between the platform's collectors and the lake.

One source of truth: the simulator writes events that follow these schemas (plus a configured share
of records that break them), and ingestion validates every landing line against them. Nothing here
imports Dagster.

Wire format: one JSON object per line (NDJSON). Timestamps are epoch milliseconds (``ts_ms``, UTC),
money is integer minor units (``*_cents``, ``*_micros``), ids are int64 except ``event_id`` and the
opaque string ids (request, session, order, stream). Keys that a schema does not name are ignored,
so a collector can add fields before the pipeline knows them (forward compatibility).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Field types as they appear on the wire and in the lake.
STRING = "string"
INT64 = "int64"
FLOAT64 = "float64"
BOOL = "bool"
JSON_OBJECT = "json_object"  # a nested JSON object, kept as JSON text in the lake

# Longest string any field may carry unless it says otherwise: protects the lake and every
# downstream GROUP BY from a client that sends megabytes in a field.
DEFAULT_MAX_STRING_CHARS = 256


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    required: bool = True
    enum: tuple[str, ...] | None = None
    min_value: float | None = None  # inclusive; negative durations and money are rejected this way
    max_chars: int = DEFAULT_MAX_STRING_CHARS  # for STRING and JSON_OBJECT (serialised length)
    doc: str = ""


@dataclass(frozen=True)
class StreamSchema:
    name: str
    doc: str
    fields: tuple[Field, ...]
    partition_field: str = "ts_ms"

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


def _common() -> tuple[Field, ...]:
    return (
        Field("event_id", STRING, max_chars=64, doc="Globally unique id; the dedupe key."),
        Field("ts_ms", INT64, min_value=0, doc="When the action happened, epoch ms UTC."),
        Field("user_id", INT64, min_value=0, doc="The acting user."),
    )


SURFACES = ("foryou", "following", "search", "profile", "live")
TRAFFIC_SOURCES = ("foryou", "following", "search", "profile", "share_link", "ad", "live")
CANDIDATE_SOURCES = ("trending", "following", "personal", "explore", "promoted")
INTERACTION_TYPES = ("like", "share", "comment", "follow")
SHARE_CHANNELS = ("im", "copy_link", "external")
AD_EVENT_TYPES = ("impression", "click", "conversion")
AD_PLACEMENTS = ("feed", "splash", "dou_plus", "search")
CONVERSION_TYPES = ("purchase", "signup", "app_install", "follow")
ORDER_SOURCES = ("video", "live", "showcase", "ad")
CURRENCIES = ("USD",)

STREAMS: dict[str, StreamSchema] = {
    s.name: s
    for s in (
        StreamSchema(
            "impressions",
            "The serve-time feature log: one row per item the recommender put in a feed, with the "
            "features it used. The joiner labels these with the actions that follow.",
            _common()
            + (
                Field("request_id", STRING, max_chars=64),
                Field("session_id", STRING, max_chars=64),
                Field("video_id", INT64, min_value=0),
                Field("creator_id", INT64, min_value=0),
                Field("position", INT64, min_value=0, doc="0-based slot in the served page."),
                Field("surface", STRING, enum=SURFACES),
                Field("candidate_source", STRING, enum=CANDIDATE_SOURCES),
                Field("model_version", STRING, max_chars=64),
                Field("score", FLOAT64, doc="The ranker's score when served."),
                Field("served_features", JSON_OBJECT, max_chars=4096,
                      doc="Feature values the recommender saw, as served (point-in-time by construction)."),
            ),
        ),
        StreamSchema(
            "views",
            "Plays of a video with the watch time; a quick swipe away is a view with small watch time.",
            _common()
            + (
                Field("session_id", STRING, max_chars=64),
                Field("request_id", STRING, required=False, max_chars=64,
                      doc="The impression's request when the play came from a served feed."),
                Field("video_id", INT64, min_value=0),
                Field("creator_id", INT64, min_value=0),
                Field("watch_time_ms", INT64, min_value=0),
                Field("video_duration_ms", INT64, min_value=1),
                Field("traffic_source", STRING, enum=TRAFFIC_SOURCES),
            ),
        ),
        StreamSchema(
            "interactions",
            "Likes, shares, comments and follows.",
            _common()
            + (
                Field("event_type", STRING, enum=INTERACTION_TYPES),
                Field("video_id", INT64, required=False, min_value=0),
                Field("creator_id", INT64, min_value=0),
                Field("comment_text", STRING, required=False, max_chars=2000),
                Field("share_channel", STRING, required=False, enum=SHARE_CHANNELS),
                Field("request_id", STRING, required=False, max_chars=64,
                      doc="The impression's request when the action was taken on a served feed item."),
            ),
        ),
        StreamSchema(
            "ad_events",
            "Ad impressions (with cost), clicks and conversions. Conversions carry no placement: "
            "which touches earned them is attribution's question.",
            _common()
            + (
                Field("event_type", STRING, enum=AD_EVENT_TYPES),
                Field("advertiser_id", INT64, min_value=0),
                Field("campaign_id", INT64, min_value=0),
                Field("ad_group_id", INT64, required=False, min_value=0),
                Field("creative_id", INT64, required=False, min_value=0),
                Field("placement", STRING, required=False, enum=AD_PLACEMENTS),
                Field("cost_micros", INT64, required=False, min_value=0,
                      doc="What the impression cost the advertiser (CPM-priced feed ads)."),
                Field("watch_time_ms", INT64, required=False, min_value=0,
                      doc="Video-ad play time, for 2s/6s views."),
                Field("conversion_type", STRING, required=False, enum=CONVERSION_TYPES),
                Field("value_cents", INT64, required=False, min_value=0),
            ),
        ),
        StreamSchema(
            "live_gifts",
            "Virtual gifts sent to a live streamer.",
            _common()
            + (
                Field("stream_id", STRING, max_chars=64),
                Field("creator_id", INT64, min_value=0),
                Field("gift_type", STRING, max_chars=32),
                Field("gift_count", INT64, min_value=1),
                Field("value_cents", INT64, min_value=1, doc="Gross value of the gifts to the user."),
            ),
        ),
        StreamSchema(
            "orders",
            "E-commerce orders placed through a creator's video, live stream or showcase.",
            _common()
            + (
                Field("order_id", STRING, max_chars=64),
                Field("creator_id", INT64, min_value=0),
                Field("video_id", INT64, required=False, min_value=0),
                Field("stream_id", STRING, required=False, max_chars=64),
                Field("campaign_id", INT64, required=False, min_value=0),
                Field("product_id", INT64, min_value=0),
                Field("quantity", INT64, min_value=1),
                Field("amount_cents", INT64, min_value=1),
                Field("currency", STRING, enum=CURRENCIES),
                Field("source", STRING, enum=ORDER_SOURCES),
            ),
        ),
    )
}

# Landing file names: <stream>/dt=<YYYY-MM-DD>/<stream>-<YYYYMMDDTHHMMSS>Z-<seq>.ndjson
# The timestamp is when the collector flushed the batch (its high-water mark); seq orders files
# flushed in the same second. Sorting names sorts flush order within a stream.
LANDING_NAME_RE = re.compile(
    r"^(?P<stream>[a-z_]+)-(?P<flushed>\d{8}T\d{6})Z-(?P<seq>\d{6,})\.ndjson$"
)


def landing_file_name(stream: str, flushed_at_ms: int, seq: int) -> str:
    """The landing file name for a batch flushed at ``flushed_at_ms`` (epoch ms UTC)."""
    import datetime as _dt

    t = _dt.datetime.fromtimestamp(flushed_at_ms / 1000, tz=_dt.timezone.utc)
    return f"{stream}-{t:%Y%m%dT%H%M%S}Z-{seq:06d}.ndjson"


def landing_rel_path(stream: str, flushed_at_ms: int, seq: int) -> str:
    import datetime as _dt

    t = _dt.datetime.fromtimestamp(flushed_at_ms / 1000, tz=_dt.timezone.utc)
    return f"{stream}/dt={t:%Y-%m-%d}/{landing_file_name(stream, flushed_at_ms, seq)}"


# Quarantine reason codes (a reason is "<code>" or "<code>:<field>").
REASONS = (
    "malformed_json",  # the line is not JSON (or not UTF-8)
    "not_an_object",  # valid JSON but not an object
    "missing_field",  # a required field is absent or null
    "wrong_type",  # a field has the wrong JSON type (e.g. a string where an integer belongs)
    "unknown_enum",  # a value outside the field's enum
    "out_of_range",  # below the field's minimum (negative durations, money, ids)
    "oversized_string",  # longer than the field's max_chars
    "future_timestamp",  # ts_ms after the file's flush time plus the allowed clock skew
    "stale_timestamp",  # ts_ms older than the allowed lateness before the flush time
    "conflicting_duplicate",  # an event_id seen before with a different payload
)


@dataclass(frozen=True)
class CatalogTable:
    name: str
    doc: str
    columns: dict[str, str] = field(default_factory=dict)


# Reference data the platform's OLTP side exports (the simulator writes these as Parquet under
# <out>/catalog/). Columns are Arrow types by name.
CATALOG: dict[str, CatalogTable] = {
    t.name: t
    for t in (
        CatalogTable("users", "Registered users and their demographics.", {
            "user_id": "int64", "age_band": "string", "gender": "string", "country": "string",
            "language": "string", "registered_at_ms": "int64", "activity_level": "string",
        }),
        CatalogTable("creators", "Creators: individual, or signed to a guild with a contract share.", {
            "creator_id": "int64", "user_id": "int64", "creator_type": "string",
            "guild_id": "int64", "guild_share": "float64", "is_live_streamer": "bool",
            "country": "string", "joined_at_ms": "int64",
            "followers": "int64",  # the platform's follower count when the catalog was exported
        }),
        CatalogTable("videos", "Videos with caption, hashtags, category and duration.", {
            "video_id": "int64", "creator_id": "int64", "caption": "string",
            "hashtags": "list<string>", "category": "string", "duration_ms": "int64",
            "language": "string", "published_at_ms": "int64", "source": "string",
            "source_video_id": "int64",
        }),
        CatalogTable("campaigns", "Ad campaigns: feed (CPM), splash (flat fee) and DOU+ promotions.", {
            "campaign_id": "int64", "advertiser_id": "int64", "ad_format": "string",
            "objective": "string", "cpm_micros": "int64", "flat_fee_cents": "int64",
            "budget_cents": "int64", "target_age_band": "string", "target_category": "string",
            "promoted_video_id": "int64", "start_ms": "int64", "end_ms": "int64",
        }),
    )
}
