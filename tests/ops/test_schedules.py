"""Schedules: the daily chain's crons and targets, the hourly analytics job's exact selection, run
requests from real schedule evaluations, and the default statuses docs/operations.md explains."""

import datetime as dt

import dagster as dg
import pytest
from dagster._utils.schedules import cron_string_iterator

from tiktok_pipelines.definitions import defs as load_defs
from tiktok_pipelines.defs.dbt_like.external import load_models, model_asset_key

UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def defs():
    return load_defs()


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def _schedule(defs, name):
    return defs.resolve_schedule_def(name)  # resolves the partitioned job's schedule too


def _next_tick(cron: str, after: dt.datetime) -> dt.datetime:
    return next(cron_string_iterator(after.timestamp(), cron, "UTC"))


def test_schedules_their_crons_targets_and_default_status(defs):
    expected = {
        "features_daily_schedule": ("0 2 * * *", "features_daily"),
        "daily_training_job_schedule": ("0 3 * * *", "daily_training_job"),
        "hourly_analytics_schedule": ("30 * * * *", "hourly_analytics_job"),
        "lake_care_schedule": ("15 4 * * *", "lake_care_job"),
    }
    assert {s.name for s in defs.schedules} == set(expected)
    for name, (cron, job) in expected.items():
        s = _schedule(defs, name)
        assert (s.cron_schedule, s.job_name, s.execution_timezone) == (cron, job, "UTC"), name
        # all on: a deployment that starts the daemon runs its daily and hourly work unattended
        assert s.default_status == dg.DefaultScheduleStatus.RUNNING, name
    sensors = {s.name: s for s in defs.sensors}
    assert {n: s.default_status for n, s in sensors.items()} == {
        "feature_dates_sensor": dg.DefaultSensorStatus.RUNNING,
        "landing_sensor": dg.DefaultSensorStatus.RUNNING,
        "online_freshness_sensor": dg.DefaultSensorStatus.RUNNING,
        "online_update_sensor": dg.DefaultSensorStatus.RUNNING,
        "run_failure_alert_sensor": dg.DefaultSensorStatus.RUNNING,
        "automation_sensor": dg.DefaultSensorStatus.RUNNING,
    }


def test_daily_chain_order(defs):
    """Features (02:00) -> retrain (03:00) -> publication, on every day of a year: each day's
    features tick comes before that day's training tick, with an hour between them."""
    features = _schedule(defs, "features_daily_schedule").cron_schedule
    training = _schedule(defs, "daily_training_job_schedule").cron_schedule
    day = dt.datetime(2026, 1, 1, tzinfo=UTC)
    for _ in range(366):
        f, t = _next_tick(features, day), _next_tick(training, day)
        assert f.date() == t.date() == day.date()
        assert t - f == dt.timedelta(hours=1)
        day += dt.timedelta(days=1)
    # publication: the retrain job runs batch_rankers, which publishes a promoted torch champion as a
    # full snapshot in its own step (no separate job that could run before it)
    job = defs.resolve_job_def("daily_training_job")
    assert set(job.asset_layer.selected_asset_keys) == {dg.AssetKey("training_examples"), dg.AssetKey("batch_rankers")}


def test_daily_schedules_request_the_right_runs(defs, instance, tmp_path):
    from tests.features.conftest import H, view, write_events
    from tiktok_pipelines.defs.resources import PlatformStorage
    from tiktok_pipelines.features import as_of_ms

    at = dt.datetime(2026, 11, 5, 2, 0, tzinfo=UTC)
    storage = PlatformStorage(data_dir=str(tmp_path))
    for day in ("2026-11-03", "2026-11-04", "2026-11-05"):  # live: today's first events are in
        write_events(tmp_path / "lake", "views", [view(as_of_ms(day) + H, 1, 100, 7, 1, 2)], day)
    ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=at, resources={"storage": storage},
                                    repository_def=defs.get_repository_def())
    (features,) = _schedule(defs, "features_daily_schedule").evaluate_tick(ctx).run_requests
    # the features of 2026-11-05 = as of its 00:00 (11-04 complete), computed two hours after it began
    assert features.partition_key == "2026-11-05"
    ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=at.replace(hour=3))
    (training,) = _schedule(defs, "daily_training_job_schedule").evaluate_tick(ctx).run_requests
    assert training.partition_key is None


def test_hourly_schedule_requests_a_run_unless_one_is_in_flight(defs, instance):
    schedule = _schedule(defs, "hourly_analytics_schedule")
    at = dt.datetime(2026, 11, 5, 14, 30, tzinfo=UTC)
    (request,) = schedule.evaluate_tick(
        dg.build_schedule_context(instance=instance, scheduled_execution_time=at)).run_requests
    assert request.run_key == at.isoformat()  # one run per tick, even if the tick is evaluated twice
    # A previous hourly run still going: the tick skips instead of queueing a second writer run.
    instance.add_run(dg.DagsterRun(job_name="hourly_analytics_job", run_id="r-busy",
                                   status=dg.DagsterRunStatus.STARTED))
    result = schedule.evaluate_tick(dg.build_schedule_context(instance=instance, scheduled_execution_time=at))
    assert not result.run_requests
    assert "r-busy" in result.skip_message
    # Once it ended (here: failed), the next tick runs again; a run of another job does not block it.
    instance.report_run_failed(instance.get_run_by_id("r-busy"))
    instance.add_run(dg.DagsterRun(job_name="features_daily", run_id="r-other", status=dg.DagsterRunStatus.STARTED))
    assert len(schedule.evaluate_tick(
        dg.build_schedule_context(instance=instance, scheduled_execution_time=at)).run_requests) == 1


def test_hourly_analytics_job_selects_exactly_the_analytics_assets(defs):
    graph = defs.resolve_asset_graph()
    job = defs.resolve_job_def("hourly_analytics_job")
    selected = set(job.asset_layer.selected_asset_keys)
    # Expected, from the model files and the attribution keys rather than from the selection itself.
    project = load_models()
    expected = {dg.AssetKey(["seeds", s]) for s in project.seeds}
    expected |= {model_asset_key(m.layer, m.name) for m in project.models.values()}
    expected |= {dg.AssetKey(["marts", "attribution_journeys"]), dg.AssetKey(["marts", "attribution_credits"])}
    expected |= {dg.AssetKey("warehouse_lake_tables"), dg.AssetKey("analytics_db")}
    assert selected == expected
    assert {graph.get(k).group_name for k in selected} == {"seeds", "staging", "intermediate", "marts", "warehouse"}
    # not the expensive or separately scheduled ones
    for name in ("video_tags", "user_features", "batch_rankers", "online_ranker", "raw_views", "dim_videos"):
        assert dg.AssetKey(name) not in selected
    # the SQL models' column tests run with them
    checks = job.asset_layer.asset_graph.asset_check_keys
    assert any(c.asset_key == dg.AssetKey(["staging", "views"]) for c in checks)
