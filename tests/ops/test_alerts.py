"""The run-failure sensor records an alert line for a run that really failed, and the alert log
survives concurrent appends from several processes."""

import datetime as dt
import json
import subprocess
import sys

import dagster as dg
import pytest

from tests.dagster.conftest import resources_for
from tiktok_pipelines.alerts import append_alert, read_alerts
from tiktok_pipelines.defs.ingest.assets import ingest_job, ingest_landing
from tiktok_pipelines.defs.ops.sensors import run_failure_alert_sensor
from tiktok_pipelines.defs.resources import PlatformStorage


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def _sensor_context(instance, result, storage):
    return dg.build_run_status_sensor_context(
        sensor_name=run_failure_alert_sensor.name,
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"storage": storage},
    ).for_run_failure()


def test_failed_ingest_run_becomes_one_alert_line(tmp_path, instance, capfd):
    data = tmp_path / "data"
    (data / "landing").mkdir(parents=True)
    # Fails on purpose: a landing path outside the landing zone is refused.
    defs = dg.Definitions(assets=[ingest_landing], jobs=[ingest_job], resources=resources_for(data))
    result = defs.resolve_job_def("ingest_job").execute_in_process(
        instance=instance, raise_on_error=False,
        run_config={"ops": {"ingest_landing": {"config": {"files": ["../../etc/passwd"]}}}})
    assert not result.success
    storage = PlatformStorage(data_dir=str(data))
    assert read_alerts(storage.alerts) == []

    capfd.readouterr()
    run_failure_alert_sensor(_sensor_context(instance, result, storage))
    logged = capfd.readouterr().err

    lines = storage.alerts.read_text().splitlines()
    assert len(lines) == 1
    alert = json.loads(lines[0])
    assert alert["run_id"] == result.run_id
    assert alert["job"] == "ingest_job"
    assert alert["failed_steps"] == ["ingest_landing"]
    # the user's exception, type and message, not Dagster's wrapper
    assert alert["error"].startswith("tiktok_pipelines.ingest.landing.UnsafeLandingPath: ")
    assert "etc/passwd" in alert["error"]
    assert alert["step_errors"]["ingest_landing"] == alert["error"]
    when = dt.datetime.fromisoformat(alert["time"])
    assert abs((dt.datetime.now(dt.timezone.utc) - when).total_seconds()) < 60
    assert storage.alerts == data.absolute() / "alerts" / "alerts.jsonl"
    # and it is logged too
    assert f"ALERT run {result.run_id} of ingest_job failed (steps: ingest_landing)" in logged

    # A second failure appends; the first line is untouched.
    run_failure_alert_sensor(_sensor_context(instance, result, storage))
    assert storage.alerts.read_text().splitlines()[0] == lines[0]
    assert len(read_alerts(storage.alerts)) == 2


def test_sensor_is_on_by_default_in_the_code_location():
    from tiktok_pipelines.definitions import defs

    sensor = {s.name: s for s in defs().sensors}["run_failure_alert_sensor"]
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


WRITER = """
import sys, hashlib
from pathlib import Path
from tiktok_pipelines.alerts import append_alert
path, who, n = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    body = ("x" * ((who * 7919 + i * 104729) % 6000))  # 0-6 KB: larger than one pipe buffer
    append_alert(path, {"who": who, "i": i, "body": body, "sha": hashlib.sha256(body.encode()).hexdigest()})
"""


def test_concurrent_appends_from_processes_never_interleave(tmp_path):
    import hashlib

    path = tmp_path / "alerts" / "alerts.jsonl"
    writers, per_writer = 6, 150
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w), str(per_writer)])
             for w in range(writers)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    # An appender that sees another's write half done starts on a new line: at worst an empty
    # line, which readers skip. Never a lost or merged record.
    raw = [line for line in path.read_bytes().splitlines() if line]
    assert len(raw) == writers * per_writer  # every write landed, none overwrote another
    records = [json.loads(line) for line in raw]  # every line is one whole JSON object
    assert all(hashlib.sha256(r["body"].encode()).hexdigest() == r["sha"] for r in records)
    assert {(r["who"], r["i"]) for r in records} == {(w, i) for w in range(writers) for i in range(per_writer)}
    assert len(read_alerts(path)) == writers * per_writer


def test_a_torn_last_line_is_skipped_not_fatal(tmp_path):
    path = tmp_path / "alerts.jsonl"
    append_alert(path, {"run_id": "a"})
    with open(path, "ab") as f:
        f.write(b'{"run_id": "b", "err')  # what a write cut short by a full disk leaves
    append_alert(path, {"run_id": "c", "error": "y" * 200_000})  # shortened to one small line
    assert [r["run_id"] for r in read_alerts(path)] == ["a", "c"]
    assert len(path.read_bytes()) < 70_000
