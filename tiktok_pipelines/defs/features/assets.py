"""Daily point-in-time features (user, video, creator) as partitioned assets.

Partition ``D`` = the features *as of D 00:00 UTC* (events strictly before D): the rows of
``feature_date = D`` in the lake's Delta table ``features/<entity>`` (beside the events, on local
disk or in the bucket ``PlatformStorage.lake_uri`` names), replaced in one transaction. Each run
also (re)creates the ``features.<entity>_daily`` views in the warehouse over the table's newest
version. Definitions: ``tiktok_pipelines/features/daily.py`` and ``docs/features.md``.

The partitions come from the data (``FEATURE_DATES``, dynamic): the feature dates the lake can
inform, from its first event date through the day after its last one, none after today (UTC).
A calendar from a fixed start date to today showed, after the quick start, eight dates done and
24 "missing" that no data could ever fill, and its 02:00 schedule computed empty days.
``feature_dates_sensor`` adds the dates as the ingest commits events; ``features_daily_schedule``
and ``backfill_features`` add the ones they run.
"""


import datetime as dt

import dagster as dg

from tiktok_pipelines.defs.catalog.assets import dim_key
from tiktok_pipelines.defs.ingest.assets import raw_key
from tiktok_pipelines.defs.ops.policies import TRANSIENT_RETRY, retry_only_transient
from tiktok_pipelines.defs.resources import PlatformStorage, resolved
from tiktok_pipelines.defs.warehouse.assets import WAREHOUSE_POOL
from tiktok_pipelines.dims import dim_table
from tiktok_pipelines.features.daily import (
    ENTITIES,
    KEYS,
    STREAMS_READ,
    VIEWS,
    backfill_dates,
    create_feature_views,
    feature_table,
    write_features,
)
from tiktok_pipelines.ingest.engine import Lake, events_table

GROUP = "features"
# The feature dates the lake informs (see the module docstring and feature_dates()).
FEATURE_DATES = "feature_dates"
FEATURE_PARTITIONS = dg.DynamicPartitionsDefinition(name=FEATURE_DATES)
FEATURE_KEYS = [dg.AssetKey(f"{entity}_features") for entity in ENTITIES]

_DESCRIPTIONS = {
    "user": "Per user, as of the partition's 00:00 UTC: plays, impressions, watch time and like/share/"
    "comment rates over 1/7/28 days; the 28-day watch-ratio and watch-time distribution (mean, p50, "
    "p90), plays by UTC hour of day (24 shares), category affinities (share of watch time).",
    "video": "Per video, as of the partition's 00:00 UTC: impressions, plays, CTR, completion rate, "
    "engagement rates over 1/7 days, and a trending score (decayed play velocity against the "
    "trailing six-day baseline).",
    "creator": "Per creator, as of the partition's 00:00 UTC: followers (cumulative distinct), "
    "follower growth over 1/7 days, views, watch time, reach, full-watch and engagement rates over 1/7 days.",
}


def _lake(storage: PlatformStorage) -> Lake:
    """The lake the events are in, and the features go: local disk, or ``lake_uri``'s bucket."""
    return Lake(storage.lake_location, storage.lake_store)


def _today_utc() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def feature_dates(storage: PlatformStorage, *, today: dt.date | None = None) -> tuple[list[str], list[str]]:
    """(the feature dates the lake informs up to ``today``, those after it). Every date from the
    first event date through the day after the last (``backfill_dates``); one after today (UTC by
    default) is not complete yet: events of today are still arriving."""
    last = (today or _today_utc()).isoformat()
    dates = backfill_dates(_lake(storage))
    return [d for d in dates if d <= last], [d for d in dates if d > last]


def add_feature_dates(instance: dg.DagsterInstance, dates: list[str]) -> list[str]:
    """Register the dates not yet partitions of ``FEATURE_DATES``; returns those added."""
    known = set(instance.get_dynamic_partitions(FEATURE_DATES))
    new = [d for d in dates if d not in known]
    if new:
        instance.add_dynamic_partitions(FEATURE_DATES, new)
    return new


def _videos_path(storage: PlatformStorage, lake: Lake):
    """None: the validated ``dims/videos`` table dim_videos publishes into the lake (what the
    features read by default); the raw export's file while dim_videos has not run."""
    return None if lake.store.version(dim_table("videos")) is not None else storage.catalog / "videos.parquet"


def _build(entity: str) -> dg.AssetsDefinition:
    deps = [raw_key(s) for s in STREAMS_READ[entity]]
    if entity in ("user", "video"):
        deps.append(dim_key("videos"))  # category (user affinities, video rows) and creator of a video

    @dg.asset(
        name=f"{entity}_features",
        group_name=GROUP,
        partitions_def=FEATURE_PARTITIONS,
        pool=WAREHOUSE_POOL,  # it (re)creates views in warehouse.duckdb
        kinds={"duckdb", "deltalake"},
        deps=deps,
        description=_DESCRIPTIONS[entity],
        metadata={
            "table": f"lake/{feature_table(entity)} (Delta, partitioned by feature_date)",
            "view": VIEWS[entity],
            "key": KEYS[entity],
            "point_in_time": "events with ts_ms < feature_date 00:00 UTC",
        },
        retry_policy=TRANSIENT_RETRY,
    )
    @retry_only_transient
    def _asset(context: dg.AssetExecutionContext, storage: PlatformStorage) -> dg.MaterializeResult:
        day = context.partition_key
        lake = _lake(storage)
        report = write_features(lake, entity, day, _videos_path(storage, lake))
        with storage.warehouse_db.connect() as con:
            partitions = create_feature_views(con, lake)
            con.execute("CHECKPOINT")
        context.log.info(f"{entity} features for {day}: {report.rows:,} rows -> {report.table} "
                         f"(version {report.version})")
        nulls = sorted(report.null_rates.items(), key=lambda kv: (-kv[1], kv[0]))
        table = "| column | null rate |\n|---|---|\n" + "\n".join(f"| {c} | {r:.3f} |" for c, r in nulls)
        stats = {k: (dg.MetadataValue.float(v) if v is not None else dg.MetadataValue.null())
                 for k, v in report.stats.items()}
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": report.rows,
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(c, t) for c, t in report.schema]),
                "feature_date": day,
                "path": dg.MetadataValue.path(report.table),
                "table_version": report.version,
                "null_rates": dg.MetadataValue.md(table),
                "max_null_rate": max((r for _, r in nulls), default=0.0),
                "partitions_in_view": partitions[entity],
                **stats,
            }
        )

    return _asset


user_features, video_features, creator_features = (_build(e) for e in ENTITIES)
feature_assets = [user_features, video_features, creator_features]

features_daily = dg.define_asset_job(
    "features_daily",
    selection=feature_assets,  # daily-partitioned: the job takes their partitions
    description="User, video and creator features for one feature date (as of its 00:00 UTC).",
)

def _inputs_version(storage: PlatformStorage) -> str:
    """The committed versions of what the features read (the events tables, dims/videos), as a
    short token: a run key with it asks once per partition and state of the data."""
    store = _lake(storage).store
    names = [events_table(s) for s in sorted({s for streams in STREAMS_READ.values() for s in streams})]
    return "-".join(f"{store.version(n)}" for n in [*names, dim_table("videos")])


@dg.schedule(
    job=features_daily,
    name="features_daily_schedule",
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="At 02:00 UTC: the newest feature date the lake informs, up to today (features as "
    "of its 00:00: the last complete day of events); skips when the lake holds no events, and when "
    "that date already ran on the same committed data.",
)
def features_daily_schedule(context: dg.ScheduleEvaluationContext, storage: PlatformStorage):
    # 02:00, not 00:00: the last minutes of yesterday have landed. Events that land later still are
    # picked up by the next tick (the data's version is in the run key) or by re-running the partition.
    when = context.scheduled_execution_time or dt.datetime.now(dt.timezone.utc)
    dates, _ = feature_dates(storage, today=when.astimezone(dt.timezone.utc).date())
    if not dates:
        return dg.SkipReason(f"no events in the lake on or before {when.date().isoformat()}: no feature date to compute")
    # A schedule cannot return partition requests (a sensor can): the date must exist before the run.
    add_feature_dates(context.instance, dates)
    day = dates[-1]
    return dg.RunRequest(run_key=f"{day}@{_inputs_version(storage)}", partition_key=day,
                         tags={"features/as_of": f"{day}T00:00:00Z"})


def backfill_features(defs: dg.Definitions, instance: dg.DagsterInstance, *,
                      today: dt.date | None = None, run_config: dict | None = None) -> dict:
    """Materialise the features for every date the lake can inform (the first event date through
    the day after the last, up to today), one partition per run; then, in one run, every unpartitioned asset
    downstream of them (SQL models that ``ref`` a feature view) and ``analytics_db``, so the
    analysts' copy holds the ``features.*`` views. What ``tiktok-pipelines run build_all`` calls
    (with its ``run_config``: the loggers that print its progress).

    The dates become partitions of ``FEATURE_DATES`` first; a date after ``today`` (UTC by
    default) is not complete yet and is left out (``not_complete_yet``)."""
    storage = resolved(defs.resources["storage"])  # its fields may be dg.EnvVar bindings
    keys, skipped = feature_dates(storage, today=today)
    add_feature_dates(instance, keys)
    job = defs.resolve_job_def("features_daily")
    failed = []
    for key in keys:
        result = job.execute_in_process(run_config=run_config, instance=instance, partition_key=key,
                                        raise_on_error=False)
        if not result.success:
            failed.append(key)
    published, downstream = None, []
    if keys:
        graph = defs.resolve_asset_graph()
        after = (dg.AssetSelection.assets(*FEATURE_KEYS).downstream()
                 - dg.AssetSelection.assets(*FEATURE_KEYS)).resolve(graph)
        downstream = sorted(k.to_user_string() for k in after if graph.get(k).partitions_def is None)
        selection = {k for k in after if graph.get(k).partitions_def is None} | {dg.AssetKey("analytics_db")}
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            run_config=run_config, instance=instance, asset_selection=sorted(selection), raise_on_error=False)
        published = result.success
    summary = {"partitions": keys, "failed": failed, "not_complete_yet": skipped,
               "downstream": downstream, "analytics_republished": published}
    summary["success"] = not failed and published is not False
    return summary
