"""training_examples through a real Dagster instance: materialized after ingestion, idempotent."""

from __future__ import annotations

import dagster as dg

from tests.dagster.conftest import resources_for
from tests.ingest.conftest import dumps, write_landing
from tests.training.test_joiner import SCENARIO
from tiktok_pipelines.defs.ingest.assets import ingest_landing
from tiktok_pipelines.defs.resources import JoinerPolicy
from tiktok_pipelines.defs.training.assets import training_examples


def test_training_examples_materialize_and_rebuild_only_what_changed(tmp_path, instance) -> None:
    for stream, rows in SCENARIO.items():
        write_landing(tmp_path / "landing", stream, [dumps(r) for r in rows])
    resources = {**resources_for(tmp_path), "joiner_policy": JoinerPolicy(negative_rate=1.0)}
    result = dg.materialize([ingest_landing, training_examples], resources=resources, instance=instance)
    assert result.success
    meta = result.asset_materializations_for_node("training_examples")[0].metadata
    assert meta["dagster/row_count"].value == len(SCENARIO["impressions"])
    assert meta["dates_built"].value == {"2026-11-02": 6}

    again = dg.materialize([training_examples], resources=resources, instance=instance)
    meta = again.asset_materializations_for_node("training_examples")[0].metadata
    assert meta["dates_built"].value == {} and meta["dates_unchanged"].value == 1
    assert meta["dagster/row_count"].value == 6
