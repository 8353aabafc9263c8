"""The production instance (dagster.postgres.yaml) on a real PostgreSQL server.

Runs of this project's jobs go through an instance loaded from that yaml; what they record is read
back from Postgres by a fresh instance and by plain SQL, and the warehouse pool's single slot is
shown to hold between processes that share only the database.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from contextlib import closing

import dagster as dg
from dagster import DagsterInstance, DagsterRunStatus
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from tests.dagster.conftest import ALL_ASSETS, resources_for, write_minimal_catalog
from tests.ingest.conftest import dumps, valid_record, write_landing
from tests.ops_pg.conftest import REPO
from tiktok_pipelines.defs.ingest.assets import INGEST_LOG_KEY, ingest_job, ingest_landing
from tiktok_pipelines.defs.warehouse.assets import WAREHOUSE_POOL, warehouse_lake_tables
from tiktok_pipelines.schemas import STREAMS


def test_production_yaml_gives_postgres_storages_and_limits(pg_home):
    instance = DagsterInstance.from_config(str(pg_home))
    try:
        # All three storages are the Postgres ones: nothing falls back to SQLite files.
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        conc = instance.get_concurrency_config()
        assert conc.pool_config.default_pool_limit == 1
        assert conc.pool_config.pool_granularity.value == "op"
        assert conc.run_queue_config.max_concurrent_runs == 4
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert instance.run_monitoring_enabled
        # The warehouse pool starts at the yaml's limit before any run has used it.
        info = instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL)
        assert (info.limit, info.using_default_limit) == (1, True)
    finally:
        instance.dispose()


def test_ingest_and_warehouse_runs_are_recorded_in_postgres(pg_home, pg_db, tmp_path):
    data = tmp_path / "data"
    write_minimal_catalog(data / "catalog")
    schema = STREAMS["views"]
    good = [dumps(valid_record(schema, i)) for i in range(40)]
    write_landing(data / "landing", "views", [*good, "{not json", dumps({"event_id": "x"})], seq=1)

    defs = dg.Definitions(assets=ALL_ASSETS, jobs=[ingest_job], resources=resources_for(data))
    instance = DagsterInstance.from_config(str(pg_home))
    try:
        assert WAREHOUSE_POOL not in {p.concurrency_key for p in instance.event_log_storage.get_pool_limits()}
        # The project's ingest_job, as the landing sensor would launch it.
        ingest = defs.resolve_job_def("ingest_job").execute_in_process(instance=instance)
        assert ingest.success
        # Then the warehouse writers (pool duckdb_warehouse), the ingest asset not re-run.
        warehouse = dg.materialize(
            ALL_ASSETS, selection=dg.AssetSelection.all() - dg.AssetSelection.assets(ingest_landing),
            resources=resources_for(data), instance=instance,
        )
        assert warehouse.success
        expected_mats = {run.run_id: len(run.get_asset_materialization_events()) for run in (ingest, warehouse)}
        assert all(n > 0 for n in expected_mats.values())
    finally:
        instance.dispose()

    # A new instance (a new process would do the same) reads everything back from Postgres.
    reopened = DagsterInstance.from_config(str(pg_home))
    try:
        for run_id in expected_mats:
            assert reopened.get_run_by_id(run_id).status == DagsterRunStatus.SUCCESS
        log = reopened.fetch_materializations(INGEST_LOG_KEY, limit=5).records
        assert [r.run_id for r in log] == [ingest.run_id]
        meta = log[0].asset_materialization.metadata
        assert (meta["rows_lake"].value, meta["rows_quarantine"].value) == (40, 2)
        assert reopened.get_latest_materialization_event(warehouse_lake_tables.key).run_id == warehouse.run_id
        # The warehouse run took duckdb_warehouse's slot through Postgres: that created the pool's
        # row with the yaml's default limit, and gave the slot back at the end.
        info = reopened.event_log_storage.get_concurrency_info(WAREHOUSE_POOL)
        assert (info.limit, info.slot_count, info.claimed_slots) == (1, 1, [])
    finally:
        reopened.dispose()

    # And plain SQL sees the same rows: the data lives in this database, not in DAGSTER_HOME.
    with closing(pg_db.connect()) as conn, conn.cursor() as cur:
        for run_id, n in expected_mats.items():
            cur.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,))
            assert cur.fetchall() == [("SUCCESS",)]
            cur.execute("SELECT count(*) FROM event_logs WHERE run_id = %s "
                        "AND dagster_event_type = 'ASSET_MATERIALIZATION'", (run_id,))
            assert cur.fetchone()[0] == n
        cur.execute('SELECT "limit" FROM concurrency_limits WHERE concurrency_key = %s', (WAREHOUSE_POOL,))
        assert cur.fetchall() == [(1,)]
    assert not list(pg_home.rglob("*.db")), "no SQLite storage may appear in DAGSTER_HOME"


# Another process sharing nothing but the database (as a second run worker on another host would).
CLAIMER = textwrap.dedent(
    """
    import json, os, sys
    from dagster import DagsterInstance
    instance = DagsterInstance.from_config(os.environ["DAGSTER_HOME"])
    status = instance.event_log_storage.claim_concurrency_slot(sys.argv[1], "run-b", "write_warehouse")
    print(json.dumps({"claimed": status.is_claimed}))
    instance.dispose()
    """
)


def _claim_in_other_process() -> bool:
    out = subprocess.run([sys.executable, "-c", CLAIMER, WAREHOUSE_POOL], cwd=REPO, check=True,
                         capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])["claimed"]


def test_warehouse_pool_has_one_slot_across_processes(pg_home):
    instance = DagsterInstance.from_config(str(pg_home))
    try:
        storage = instance.event_log_storage
        # What a run's executor does on the pool's first use: give it the yaml's default limit.
        assert storage.initialize_concurrency_limit_to_default(WAREHOUSE_POOL)
        assert storage.claim_concurrency_slot(WAREHOUSE_POOL, "run-a", "write_warehouse").is_claimed
        # While run-a writes, a second writer elsewhere waits: the pool holds one slot.
        assert _claim_in_other_process() is False
        assert [s.run_id for s in storage.get_concurrency_info(WAREHOUSE_POOL).claimed_slots] == ["run-a"]
        storage.free_concurrency_slot_for_step("run-a", "write_warehouse")
        # The freed slot goes to the step that was waiting for it.
        assert _claim_in_other_process() is True
        assert [s.run_id for s in storage.get_concurrency_info(WAREHOUSE_POOL).claimed_slots] == ["run-b"]
    finally:
        instance.dispose()
