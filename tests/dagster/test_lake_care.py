"""The lake's care assets on a real Dagster instance: compaction keeps every row and leaves a
reader pinned to an older version working, vacuum removes only what no version in the retention
needs (a dead writer's orphan once old enough), and the report reads the Delta logs."""

from __future__ import annotations

import os
import shutil
import time

import dagster as dg
from deltalake import DeltaTable

from tests.dagster.conftest import resources_for
from tests.ingest.conftest import dumps, valid_record, write_landing
from tiktok_pipelines.defs.lake.assets import LakeCareConfig, lake_compaction, lake_report, lake_vacuum
from tiktok_pipelines.ingest.engine import ingest_files
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.schemas import STREAMS

VIEWS = STREAMS["views"]
CARE = [lake_compaction, lake_vacuum, lake_report]


def _config(**care) -> dg.RunConfig:
    return dg.RunConfig(ops={"lake_compaction": LakeCareConfig(**care), "lake_vacuum": LakeCareConfig(**care)})


def _ids(table: DeltaTable) -> list[str]:
    return sorted(table.to_pyarrow_table(columns=["event_id"]).column("event_id").to_pylist())


def test_compaction_vacuum_and_report(tmp_path, instance):
    data = tmp_path / "data"
    landing, lake = data / "landing", data / "lake"
    for seq in range(1, 5):  # four batches: four small files in one partition
        write_landing(landing, "views", [dumps(valid_record(VIEWS, seq * 10 + i)) for i in range(5)], seq=seq)
        ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
    views = str(lake / "events" / "views")
    before = DeltaTable(views)
    pinned, ids = before.version(), _ids(before)
    assert len(before.file_uris()) == 4 and len(ids) == 20

    # Fresh partitions are left alone by default (a batch's files keep their names for a day).
    r = dg.materialize(CARE, resources=resources_for(data), instance=instance)
    assert r.success and DeltaTable(views).version() == pinned
    idle = r.asset_materializations_for_node("lake_compaction")[0].metadata
    assert idle["tables_compacted"].value == 0 and "Nothing to do" in idle["tables"].value

    # A dead writer's orphan, a week and a day old, in the table's folder.
    part = lake / "events" / "views" / "event_date=2026-11-02"
    orphan = part / "part-deadbeef-c0.parquet"
    shutil.copy(next(part.glob("*.parquet")), orphan)
    old = time.time() - 8 * 86_400
    os.utime(orphan, (old, old))

    r = dg.materialize(CARE, resources=resources_for(data), instance=instance,
                       run_config=_config(compact_min_age_hours=0))
    assert r.success
    after = DeltaTable(views)
    assert len(after.file_uris()) == 1 and _ids(after) == ids  # compacted, nothing lost or doubled
    assert not orphan.exists()  # vacuumed: no version names it and it is past the retention
    # The compacted-away files are newer than the retention: a reader pinned before still reads.
    assert _ids(DeltaTable(views, version=pinned)) == ids

    mats = {m.asset_key.path[-1]: m.metadata for m in r.asset_materializations_for_node("lake_report")}
    report = mats["lake_report"]
    assert report["dagster/row_count"].value >= 20 + 4  # the views and the ingest log's rows
    assert "events/views" in report["report"].value
    comp = {m.asset_key.path[-1]: m.metadata for m in r.asset_materializations_for_node("lake_compaction")}
    assert comp["lake_compaction"]["files_removed"].value >= 4
    # the table lists what was compacted, not a row of zeros per cared table
    assert "events/views" in comp["lake_compaction"]["tables"].value
    assert "events/orders" not in comp["lake_compaction"]["tables"].value
    assert isinstance(report["mb"].value, float) and report["mb"].value == round(report["mb"].value, 2)
    vac = {m.asset_key.path[-1]: m.metadata for m in r.asset_materializations_for_node("lake_vacuum")}
    assert vac["lake_vacuum"]["files_deleted"].value >= 1


def test_the_care_job_is_scheduled_daily():
    from tiktok_pipelines.definitions import defs

    schedule = defs().resolve_schedule_def("lake_care_schedule")
    assert schedule.cron_schedule == "15 4 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_a_batch_still_audits_after_compaction_merged_its_files(tmp_path):
    from tiktok_pipelines.ingest.engine import audit_batch
    from tiktok_pipelines.tables import CarePolicy, TableStore, compact

    landing, lake = tmp_path / "landing", tmp_path / "lake"
    batches = []
    for seq in (1, 2):
        write_landing(landing, "views", [dumps(valid_record(VIEWS, seq * 10 + i)) for i in range(5)] + ["{bad"],
                      seq=seq)
        batches.append(ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake).batch_id)
    store = TableStore.from_config(lake)
    assert compact(store, "events/views", CarePolicy(compact_min_age_hours=0))["files_removed"] == 2
    assert not any(f"part-{batches[0]}-" in u for u in DeltaTable(str(lake / "events" / "views")).file_uris())
    for b in batches:
        assert audit_batch(lake, landing, b) == []
