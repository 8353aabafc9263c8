"""Monolith's experiments on a small simulated world: well-formed, deterministic, consistent."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pytest

from tiktok_pipelines.experiments.monolith import collisionless_vs_hashing, online_vs_batch
from tiktok_pipelines.ingest.engine import ingest_files
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.simulator import simulate
from tiktok_pipelines.training.joiner import JoinerConfig, build_examples, examples_glob


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    w = tmp_path_factory.mktemp("exp")
    simulate(w, seed=9, users=300, videos=600, days=3, events_per_day=25_000, start_date="2026-11-01",
             kuairec_dir=None, write_truth=False)
    ingest_files(list_landing_files(w / "landing"), landing_root=w / "landing", lake_root=w / "lake")
    build_examples(w / "lake", JoinerConfig(negative_rate=0.5))
    return duckdb.sql(f"SELECT * FROM read_parquet({examples_glob(w / 'lake')}, hive_partitioning = true)").to_arrow_table()


def test_online_vs_batch_and_collisionless_vs_hashing(examples) -> None:
    a = online_vs_batch(examples, train_days=2, negative_rate=0.5, dim=4)
    assert a["eval_days"] == ["2026-11-03"] and set(a["auc"]) == {"batch_only", "daily", "hourly", "every_15_min"}
    assert all(0.5 < v < 1 for v in a["auc"].values()), a["auc"]
    # one evaluation day: a daily sync never happens inside it, so it is the batch model exactly
    assert a["auc"]["daily"] == a["auc"]["batch_only"]
    b = collisionless_vs_hashing(examples, train_days=2, negative_rate=0.5, dim=4)
    # same model, data and seed as (a)'s batch-only run: the same AUC
    assert b["auc_collisionless"] == a["auc"]["batch_only"]
    assert 0.5 < b["auc_hashing"] < 1
    users = np.unique(examples.column("user_id").to_numpy()).size
    m = b["hashing_rows"]["user_id"]
    birthday = 1 - math.exp(-(users - 1) / m)  # share of ids whose row another id also hashes to
    assert b["hashing_collision_rate"]["user_id"] == pytest.approx(birthday, abs=0.08)
