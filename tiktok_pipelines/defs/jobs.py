"""Jobs that span domains."""

import dagster as dg

# The quick start's main job: everything that exists, from landing files to the analysts' database.
build_all = dg.define_asset_job(
    "build_all",
    # The experiments take minutes of CPU and answer a research question: their own job.
    # The daily-partitioned features cannot share a job with unpartitioned assets: `tiktok-pipelines
    # run build_all` materialises their partitions after this job (features_daily, one per date).
    # By group, not by key: a selection naming a missing key fails, and tests build subsets.
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups("experiments", "features"),
    description="Ingest every pending landing file, load the catalog, refresh the warehouse and "
    "publish analytics.duckdb.",
)
