from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from tests.marts.tiny_warehouse import build_tiny_warehouse, load
from tiktok_pipelines.dbt_like import Project, TestResult


@dataclass
class Built:
    path: Path
    project: Project
    tests: list[TestResult]

    def connect(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(self.path), read_only=True)


@pytest.fixture(scope="package")
def built(tmp_path_factory) -> Built:
    """The tiny warehouse, built once with every seed and model, and tested."""
    path = tmp_path_factory.mktemp("marts") / "warehouse.duckdb"
    build_tiny_warehouse(path)
    project = load()
    con = duckdb.connect(str(path))
    try:
        project.build(con)
        results = project.test(con)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return Built(path, project, results)


@pytest.fixture()
def con(built):
    c = built.connect()
    yield c
    c.close()
