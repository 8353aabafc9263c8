"""The landing sensor under Dagster's own sensor daemon code (``execute_sensor_iteration``), with a
queued run coordinator and no queue daemon, so the runs it creates stay queued: the window between
a request and its commit. The next ticks must not request those files again, must request only
what arrived since, and the cursor the daemon stores must stay short."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import dagster as dg
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.sensor import execute_sensor_iteration

from tests.dagster.test_sensor import _files, _write

DEFS_FILE = Path(__file__).with_name("landing_sensor_defs.py")


def _iterate(ctx) -> None:
    for _ in execute_sensor_iteration(ctx, logging.getLogger("test_sensor_daemon"), None, None):
        pass


def test_the_daemon_does_not_request_queued_files_twice(tmp_path, monkeypatch):
    import datetime as dt

    data = tmp_path / "data"
    landing = data / "landing"
    monkeypatch.setenv("TIKTOK_TEST_DATA_DIR", str(data))
    first = [_write(landing, i) for i in range(1, 4)]
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(python_file=str(DEFS_FILE), attribute="defs"), location_name="landing_test")
    overrides = {"run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}}
    with dg.instance_for_test(overrides=overrides) as instance, \
            create_test_daemon_workspace_context(InProcessWorkspaceLoadTarget(origin), instance) as ctx:
        t0 = dt.datetime.now(dt.timezone.utc)
        with freeze_time(t0):
            _iterate(ctx)
        runs = instance.get_runs()
        assert sorted(f for r in runs for f in _files(r)) == sorted(first)
        assert {r.status for r in runs} == {dg.DagsterRunStatus.QUEUED}
        # 10 s later (past the sensor's 5-s interval): the files are in queued runs; one new file
        new = _write(landing, 4)
        with freeze_time(t0 + dt.timedelta(seconds=10)):
            _iterate(ctx)
        runs = instance.get_runs()
        named = [f for r in runs for f in _files(r)]
        assert sorted(named) == sorted(first + [new]) and len(named) == len(set(named))
        # and again: nothing new, nothing asked
        with freeze_time(t0 + dt.timedelta(seconds=20)):
            _iterate(ctx)
        assert len(instance.get_runs()) == len(runs)
        # a queued run fails for good: its files wait for the sweep (an hour here), not the next tick
        # (the run of the third file alone: held back, it would be regrouped with the next file
        # under a new run key, which Dagster would launch)
        instance.report_run_failed(next(r for r in runs if _files(r) == [first[2]]))
        later = _write(landing, 5)  # and a file arrives, so the tick reads the lake and the runs
        with freeze_time(t0 + dt.timedelta(seconds=30)):
            _iterate(ctx)
        added = instance.get_runs()[: len(instance.get_runs()) - len(runs)]
        assert [_files(r) for r in added] == [[later]]
        state = next(s for s in instance.all_instigator_state() if s.instigator_name == "landing_sensor")
        cursor = state.instigator_data.cursor
        assert len(cursor) < 200 and json.loads(cursor)["files"] == 5
