"""Every ``TIKTOK_*`` setting: its environment variable, its one default, and the resource field it
configures. No Dagster here: the CLI's argparse defaults read this table too.

Nothing is read at import time. ``value(name)`` reads the environment when it is called: the
Dagster code location binds each setting to its resource field (``defs/resources.py``:
``dg.EnvVar`` where the variable is set, the default here otherwise) when its definitions load,
and the CLI when it builds its parser. ``docs/operations.md`` ("Settings") is generated from this
table (``markdown_table``; tests/ops/test_settings.py keeps it fresh).

The standard AWS variables (``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_DEFAULT_REGION``, the
credentials) are not settings of this project: the S3 clients (delta-rs in ``tables.py``, boto3 in
``serving/objectstore.py``) read them when a store is opened, as every AWS tool does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    env: str  # the environment variable
    kind: type  # str, int, float or bool
    default: str | int | float | bool | None  # None: unset (the field's doc says what that means)
    resource: str  # the resource key in the code location's Definitions
    field: str  # the field of that resource
    doc: str
    # When it is read: "run" (a resource field, resolved when a run or sensor tick starts), "load"
    # (when the code location loads: decorator arguments such as retry and freshness policies, the
    # SQL models that become assets; a change needs a reload of the location), "open" (when a store
    # opens: the Dagster writers pass the field, resolved when their run starts; `serve` has the
    # core read the environment then).
    read: str = "run"


SETTINGS: tuple[Setting, ...] = (
    # --- storage: where files live ------------------------------------------------------------------
    Setting("TIKTOK_DATA_DIR", str, "data", "storage", "data_dir",
            "Root of the landing zone, lake, catalog, warehouse, models and serving folders."),
    Setting("TIKTOK_LAKE_URI", str, None, "storage", "lake_uri",
            "The lake's Delta tables on object storage (`s3://bucket/prefix`); unset: `<data_dir>/lake`."),
    Setting("TIKTOK_SERVING_URI", str, None, "storage", "serving_uri",
            "The serving versions on object storage (`s3://bucket/prefix`); unset: `<data_dir>/serving`."),
    Setting("TIKTOK_SERVING_CACHE", str, None, "storage", "serving_cache",
            "Local copies of object-storage serving versions; unset: `$XDG_CACHE_HOME` (or "
            "`~/.cache`)`/tiktok_pipelines/serving`.", read="open"),
    Setting("TIKTOK_MODELS_DIR", str, None, "dbt_like", "models_dir",
            "The dbt-like SQL models' folder; unset: `dbt_like_models/` shipped with the package.",
            read="load"),
    # --- ingestion ------------------------------------------------------------------------------------
    Setting("TIKTOK_FUTURE_SKEW_SECONDS", int, 300, "ingest_policy", "future_skew_seconds",
            "How far an event's time may be ahead of its file's flush time (and the wall clock)."),
    Setting("TIKTOK_MAX_LATENESS_DAYS", int, 30, "ingest_policy", "max_lateness_days",
            "Events older than this (against their file's flush time) are quarantined."),
    Setting("TIKTOK_FILES_PER_RUN", int, 200, "ingest_policy", "files_per_run",
            "The landing sensor groups new files into runs of at most this many."),
    Setting("TIKTOK_SENSOR_SWEEP_S", float, 300.0, "ingest_policy", "sensor_sweep_s",
            "How often the landing sensor also requests files left behind its window; 0: never."),
    # --- labels and training --------------------------------------------------------------------------
    Setting("TIKTOK_LABEL_WINDOW_S", int, 1800, "joiner_policy", "label_window_s",
            "How long after an impression its engagement still labels it."),
    Setting("TIKTOK_NEGATIVE_RATE", float, 0.5, "joiner_policy", "negative_rate",
            "Share of negative examples kept (positives are all kept)."),
    Setting("TIKTOK_PROMOTION_MARGIN_AUC", float, 0.002, "training_policy", "promotion_margin_auc",
            "A challenger within this AUC of the champion (same held-out day) is promoted."),
    # --- operations: retries and freshness (decorator arguments, read when the location loads) --------
    Setting("TIKTOK_RETRY_MAX", int, 3, "ops_policy", "retry_max",
            "Retries of a transient failure (warehouse writers, ingestion, catalog, online updates).",
            read="load"),
    Setting("TIKTOK_RETRY_DELAY_S", float, 5.0, "ops_policy", "retry_delay_s",
            "Base delay of the exponential backoff between retries (jittered by as much).", read="load"),
    Setting("TIKTOK_FRESHNESS_ANALYTICS_WARN_MIN", float, 120.0, "ops_policy", "freshness_analytics_warn_min",
            "`analytics_db` and every mart: WARN once the last materialization is older.", read="load"),
    Setting("TIKTOK_FRESHNESS_ANALYTICS_FAIL_MIN", float, 180.0, "ops_policy", "freshness_analytics_fail_min",
            "`analytics_db` and every mart: FAIL once the last materialization is older.", read="load"),
    Setting("TIKTOK_FRESHNESS_BATCH_WARN_MIN", float, 1560.0, "ops_policy", "freshness_batch_warn_min",
            "`batch_rankers`: WARN once the last materialization is older.", read="load"),
    Setting("TIKTOK_FRESHNESS_BATCH_FAIL_MIN", float, 1800.0, "ops_policy", "freshness_batch_fail_min",
            "`batch_rankers`: FAIL once the last materialization is older.", read="load"),
    Setting("TIKTOK_FRESHNESS_ONLINE_WARN_MIN", float, 15.0, "ops_policy", "freshness_online_warn_min",
            "`online_ranker:follows_events`: WARN once the model trails the events by more.", read="load"),
    Setting("TIKTOK_FRESHNESS_ONLINE_FAIL_MIN", float, 60.0, "ops_policy", "freshness_online_fail_min",
            "`online_ranker:follows_events`: FAIL once the model trails the events by more.", read="load"),
)

BY_ENV: dict[str, Setting] = {s.env: s for s in SETTINGS}


def default(env: str):
    """The setting's default (the resources' field defaults and the CLI's read this)."""
    return BY_ENV[env].default


def parse(setting: Setting, raw: str):
    """``raw`` as the setting's type; a clear error names the variable."""
    try:
        if setting.kind is bool:
            if raw.strip().lower() not in ("1", "true", "yes", "0", "false", "no"):
                raise ValueError(raw)
            return raw.strip().lower() in ("1", "true", "yes")
        return setting.kind(raw)
    except ValueError:
        raise ValueError(f"{setting.env}={raw!r} is not a valid {setting.kind.__name__}") from None


def value(env: str, environ: Mapping[str, str] | None = None):
    """The setting as the environment has it now (an empty variable counts as unset), else its default."""
    setting = BY_ENV[env]
    raw = (os.environ if environ is None else environ).get(env)
    return setting.default if raw is None or raw == "" else parse(setting, raw)


def for_resource(resource: str) -> list[Setting]:
    return [s for s in SETTINGS if s.resource == resource]


def markdown_table() -> str:
    """The settings as the Markdown table docs/operations.md carries."""
    read = {"run": "when a run starts", "load": "when the location loads", "open": "when a store opens"}
    rows = ["| variable | resource field | default | read | meaning |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        shown = "unset" if s.default is None else f"`{s.default}`"
        rows.append(f"| `{s.env}` | `{s.resource}.{s.field}` | {shown} | {read[s.read]} | {s.doc} |")
    return "\n".join(rows)
