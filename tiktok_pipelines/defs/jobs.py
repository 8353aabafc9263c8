"""Jobs that span domains."""

import dagster as dg

# The quick start's main job: everything that exists, from landing files to the analysts' database.
build_all = dg.define_asset_job(
    "build_all",
    selection=dg.AssetSelection.all(),
    description="Ingest every pending landing file, load the catalog, refresh the warehouse and "
    "publish analytics.duckdb.",
)
