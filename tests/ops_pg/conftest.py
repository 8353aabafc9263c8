from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.ops_pg.pg_cluster import ENV_VARS, PgServer, find_pg_bin, fresh_database, throwaway_cluster

REPO = Path(__file__).resolve().parents[2]
PROD_YAML = REPO / "dagster.postgres.yaml"


@pytest.fixture(scope="session")
def pg_server():
    """CI's server (DAGSTER_PG_* set by .ci/run), else a throwaway cluster of our own."""
    given = PgServer.from_env()
    if given is not None:
        yield given
        return
    bin_dir = find_pg_bin()
    if bin_dir is None:
        if os.environ.get("TIKTOK_CI"):
            pytest.fail("TIKTOK_CI is set but there is neither DAGSTER_PG_HOST nor initdb/pg_ctl")
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    with throwaway_cluster(bin_dir) as server:
        yield server


@pytest.fixture
def pg_db(pg_server):
    """An empty database per test, so each test sees only its own runs."""
    with fresh_database(pg_server) as server:
        yield server


@pytest.fixture
def pg_home(tmp_path, pg_db, monkeypatch):
    """A DAGSTER_HOME holding the production yaml, the env pointing at this test's database."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROD_YAML, home / "dagster.yaml")
    for k in ENV_VARS:
        monkeypatch.delenv(k, raising=False)
    for k, v in pg_db.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home
