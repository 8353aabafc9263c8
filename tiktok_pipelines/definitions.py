"""The code location: every domain folder under ``defs/`` assembled into one Definitions.

Domains (find any asset by its folder): ``ingest/`` landing -> lake, ``catalog/`` reference data,
``warehouse/`` DuckDB warehouse and the analysts' copy. ``defs/resources.py`` binds storage paths
and policies from the environment; ``defs/jobs.py`` holds the jobs that span domains.
"""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
