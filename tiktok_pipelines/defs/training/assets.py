"""Training data: the joiner turns the serve-time feature log into labelled examples."""


import dagster as dg
import duckdb

from tiktok_pipelines.defs.ingest.assets import raw_key
from tiktok_pipelines.defs.resources import JoinerPolicy, PlatformStorage
from tiktok_pipelines.training.joiner import HISTORY_FEATURES, LABELS, SERVED_FEATURES, build_examples, examples_glob

GROUP = "training"


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb", "parquet"},
    deps=[raw_key("impressions"), raw_key("views"), raw_key("interactions")],
    description="One labelled example per impression: served features, point-in-time history "
    "counts, labels from the actions in the label window, negatives downsampled (sample_rate). "
    "Rebuilds only the dates whose lake partitions changed. Labels: training/joiner.py.",
    metadata={
        "path": "lake/examples/event_date=*/examples.parquet",
        "labels": ", ".join(LABELS),
        "features": ", ".join([*SERVED_FEATURES, *HISTORY_FEATURES, "hour_of_day"]),
    },
)
def training_examples(context: dg.AssetExecutionContext, storage: PlatformStorage,
                      joiner_policy: JoinerPolicy) -> dg.MaterializeResult:
    config = joiner_policy.config()
    report = build_examples(storage.lake, config)
    context.log.info(f"built {len(report.built)} dates, {len(report.skipped)} unchanged")
    rows = 0
    table = "| date | examples | engaged | played | finished |\n|---|---|---|---|---|\n"
    if report.built or report.skipped:
        stats = duckdb.sql(
            f"""
            SELECT event_date::VARCHAR, count(*), avg(engaged::INT), avg(played::INT), avg(finished::INT)
            FROM read_parquet({examples_glob(storage.lake)}, hive_partitioning = true)
            GROUP BY 1 ORDER BY 1
            """
        ).fetchall()
        rows = sum(r[1] for r in stats)
        table += "\n".join(f"| {d} | {n:,} | {e:.3f} | {p:.3f} | {f:.3f} |" for d, n, e, p, f in stats)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "dates_built": dg.MetadataValue.json(report.built),
            "dates_unchanged": len(report.skipped),
            "by_date (sampled rates)": dg.MetadataValue.md(table),
            "negative_rate": config.negative_rate,
            "label_window_s": config.label_window_s,
        }
    )
