"""Point-in-time daily features (user, video, creator) as Delta tables in the lake; see ``daily.py``."""

from tiktok_pipelines.features.daily import (
    ENTITIES,
    KEYS,
    STREAMS_READ,
    VIEWS,
    FeatureReport,
    as_of_ms,
    backfill_dates,
    compute_features,
    create_feature_views,
    event_dates,
    feature_dates_written,
    feature_table,
    read_features,
    write_features,
)

__all__ = [
    "ENTITIES", "KEYS", "STREAMS_READ", "VIEWS", "FeatureReport", "as_of_ms", "backfill_dates",
    "compute_features", "create_feature_views", "event_dates", "feature_dates_written", "feature_table",
    "read_features", "write_features",
]
