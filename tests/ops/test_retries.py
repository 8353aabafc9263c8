"""Retries: a real DuckDB lock held by another process is ridden out by the retry policy; a data
error (a landing path outside the landing zone) fails at its first attempt, never retried."""

import os
import signal
import subprocess
import sys
import threading
import time

import dagster as dg
import duckdb
import pytest

from tests.dagster.conftest import resources_for, write_minimal_catalog
from tiktok_pipelines.defs.catalog.assets import catalog_assets
from tiktok_pipelines.defs.ingest.assets import ingest_landing
from tiktok_pipelines.defs.ops.policies import (
    TRANSIENT_RETRY,
    is_transient,
    retry_only_transient,
)
from tiktok_pipelines.defs.warehouse.assets import warehouse_lake_tables

# Holds warehouse.duckdb open for writing (DuckDB's file lock) until killed.
HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE IF NOT EXISTS held (x INT)")
print("locked", flush=True)
time.sleep(600)
"""


def _hold_lock(path):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _events(instance, event_type, run_id=None):
    run_ids = [run_id] if run_id else [r.run_id for r in instance.get_runs()]
    return [e for rid in run_ids for e in instance.all_logs(rid, of_type=event_type)]


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def test_real_duckdb_lock_is_transient_and_a_binder_error_is_not(tmp_path):
    path = tmp_path / "w.duckdb"
    holder = _hold_lock(path)
    try:
        with pytest.raises(duckdb.IOException) as lock_error:
            duckdb.connect(str(path))
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert is_transient(lock_error.value)
    # Wrapped (raise ... from e) the lock still counts: classification follows the cause chain.
    try:
        raise RuntimeError("building staging.x failed") from lock_error.value
    except RuntimeError as wrapped:
        assert is_transient(wrapped)
    with pytest.raises(duckdb.BinderException) as binder:
        duckdb.sql("SELECT no_such_column FROM (SELECT 1 AS x)")
    assert not is_transient(binder.value)
    assert is_transient(OSError(5, "Input/output error"))  # EIO: an NFS or disk hiccup
    assert is_transient(TimeoutError())
    assert not is_transient(OSError(28, "No space left on device"))  # ENOSPC: retrying won't free it
    assert not is_transient(FileNotFoundError(2, "No such file"))
    assert not is_transient(ValueError("bad row"))


def test_wrapper_keeps_signature_and_turns_data_errors_into_final_failures():
    @retry_only_transient
    def gen(context, storage):
        yield 1
        raise KeyError("column")

    import inspect
    assert list(inspect.signature(gen).parameters) == ["context", "storage"]
    assert inspect.isgeneratorfunction(gen)
    it = gen(None, None)
    assert next(it) == 1
    with pytest.raises(dg.Failure) as failure:
        next(it)
    assert failure.value.allow_retries is False
    assert "KeyError" in failure.value.description

    @retry_only_transient
    def locked():
        raise BlockingIOError(11, "Resource temporarily unavailable")

    with pytest.raises(BlockingIOError):  # transient: left for the RetryPolicy
        locked()


def test_warehouse_writer_retries_through_a_real_lock(tmp_path, instance):
    """Another process holds warehouse.duckdb; the step fails, is retried with backoff, and succeeds
    once the holder is gone. Nothing but the retry policy brings it back."""
    data = tmp_path / "data"
    write_minimal_catalog(data / "catalog")
    (data).mkdir(exist_ok=True)
    holder = _hold_lock(data / "warehouse.duckdb")
    outcome = {}

    def run():
        outcome["result"] = dg.materialize([*catalog_assets, warehouse_lake_tables], resources=resources_for(data),
                                           instance=instance, raise_on_error=False)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while not _events(instance, dg.DagsterEventType.STEP_UP_FOR_RETRY) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # the lock goes away with its process
        holder.wait()
    # Worst case three attempts at (2^n - 1) * delay +- delay: well under two minutes with the defaults.
    thread.join(timeout=TRANSIENT_RETRY.delay * 12 + 60)
    assert not thread.is_alive()
    result = outcome["result"]
    assert result.success
    retries = _events(instance, dg.DagsterEventType.STEP_UP_FOR_RETRY, result.run_id)
    assert retries and all(e.step_key == "warehouse_lake_tables" for e in retries)
    assert "lock" in retries[0].dagster_event.event_specific_data.error.to_string().lower()
    assert 1 <= len(retries) <= TRANSIENT_RETRY.max_retries
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    assert con.sql("SELECT count(*) FROM dims.users").fetchall()[0][0] == 3


def test_a_data_error_fails_once_without_retry(tmp_path, instance):
    """A landing path that escapes the landing zone is a data error: one attempt, no retry."""
    data = tmp_path / "data"
    (data / "landing").mkdir(parents=True)
    result = dg.materialize(
        [ingest_landing], resources=resources_for(data), instance=instance, raise_on_error=False,
        run_config={"ops": {"ingest_landing": {"config": {"files": ["../outside/x.ndjson"]}}}})
    assert not result.success
    assert _events(instance, dg.DagsterEventType.STEP_UP_FOR_RETRY, result.run_id) == []
    (failure,) = result.get_step_failure_events()
    assert failure.step_key == "ingest_landing"
    assert "UnsafeLandingPath" in failure.event_specific_data.error.to_string()
    assert failure.event_specific_data.user_failure_data.metadata["transient"].value is False
