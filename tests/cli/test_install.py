"""The quick start from a non-editable install: ``.ci/install-check`` (what CI runs) installs the
wheel setuptools builds from pyproject.toml with ``pip install --no-deps --target`` (dependencies
reused from this venv), then runs ``tiktok-pipelines simulate`` and ``tiktok-pipelines run
build_all`` from a folder outside the repository. Fails when a file the code reads at run time
(assets/taxonomy.json, dbt_like_models/, a .sql file) is left out of the wheel or found by a path
into the checkout."""

import json
import os
import subprocess
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_start_from_a_non_editable_install(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([str(REPO / ".ci" / "install-check"), str(tmp_path)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    site, data = tmp_path / "site", tmp_path / "run" / "data"
    # The symlinks of tiktok_pipelines/_data are folders in the installed copy.
    shipped = site / "tiktok_pipelines" / "_data"
    assert (shipped / "assets" / "taxonomy.json").is_file() and not (shipped / "assets").is_symlink()
    assert sorted(p.name for p in (shipped / "dbt_like_models").iterdir() if p.is_dir()) == \
        ["intermediate", "marts", "seeds", "staging"]
    summary = json.loads((tmp_path / "summary.json").read_text().splitlines()[-1])
    assert summary["success"] is True and summary["features"]["partitions"]
    con = duckdb.connect(str(data / "analytics.duckdb"), read_only=True)
    con.execute(f"SET file_search_path = '{data}'")
    assert con.sql("SELECT count(*) FROM dims.users").fetchall()[0][0] == 200
    # the SQL models of the shipped dbt_like_models/ were built: the marts are there
    marts = con.sql("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'marts'").fetchall()[0][0]
    assert marts >= 8
