"""Configuration as resources: every TIKTOK_* setting of tiktok_pipelines/settings.py is a field of
its resource with the table's default, bound to dg.EnvVar where its variable is set; nothing in the
package reads the environment at import time; docs/operations.md carries the table as generated."""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from tests.pyast import parse
from tests.s3 import new_bucket
from tests.serving.publisher_steps import dense_for, new_tables
from tiktok_pipelines import settings
from tiktok_pipelines.cli import build_parser
from tiktok_pipelines.defs.resources import (
    RESOURCE_CLASSES,
    PlatformStorage,
    default_resources,
    from_environment,
    resolved,
)
from tiktok_pipelines.serving.objectstore import S3Root
from tiktok_pipelines.serving.store import ServingPublisher, list_versions, load_latest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "tiktok_pipelines"
BEGIN, END = "<!-- settings:begin (generated from tiktok_pipelines/settings.py) -->", "<!-- settings:end -->"


def test_every_setting_is_a_resource_field_with_the_tables_default():
    for s in settings.SETTINGS:
        assert s.env.startswith("TIKTOK_")
        field = RESOURCE_CLASSES[s.resource].model_fields[s.field]
        assert field.default == s.default, s.env
    # no TIKTOK_ variable is read anywhere in the package that the table does not list
    named = set()
    for path in PACKAGE.rglob("*.py"):
        named |= set(re.findall(r'"(TIKTOK_[A-Z0-9_]+)"', path.read_text()))
    assert named <= set(settings.BY_ENV), named - set(settings.BY_ENV)


def test_fields_bind_the_environment_when_set(monkeypatch):
    for s in settings.SETTINGS:
        monkeypatch.delenv(s.env, raising=False)
    plain = default_resources()
    assert plain["storage"].data_dir == "data" and plain["ingest_policy"].files_per_run == 200

    monkeypatch.setenv("TIKTOK_DATA_DIR", "/srv/data")
    monkeypatch.setenv("TIKTOK_FILES_PER_RUN", "7")
    monkeypatch.setenv("TIKTOK_NEGATIVE_RATE", "0.25")
    bound = default_resources()
    # the UI shows the variable's name; Dagster resolves it when a run starts
    assert isinstance(bound["storage"].data_dir, dg.EnvVar)
    assert bound["storage"].data_dir.env_var_name == "TIKTOK_DATA_DIR"
    assert resolved(bound["storage"]).data_dir == "/srv/data"
    assert resolved(bound["ingest_policy"]).files_per_run == 7
    assert bound["joiner_policy"].negative_rate == 0.25  # no float source in Dagster: parsed at load
    assert from_environment(RESOURCE_CLASSES["ops_policy"], "ops_policy").retry_max == 3

    monkeypatch.setenv("TIKTOK_FILES_PER_RUN", "many")
    with pytest.raises(ValueError, match="TIKTOK_FILES_PER_RUN='many' is not a valid int"):
        default_resources()


def test_serving_cache_is_where_the_writers_copies_go(tmp_path, monkeypatch, s3_endpoint, s3_env):
    """TIKTOK_SERVING_CACHE binds storage.serving_cache; the serving location the Dagster writers open
    (``storage.serving_location``) keeps its local copies there. A value on the resource is the one
    used, whatever the environment says (the store reads the variable only when given none)."""
    for s in settings.SETTINGS:
        monkeypatch.delenv(s.env, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    uri = f"s3://{new_bucket(s3_endpoint)}/serving"
    assert default_resources()["storage"].serving_cache is None
    monkeypatch.setenv("TIKTOK_SERVING_URI", uri)
    monkeypatch.setenv("TIKTOK_SERVING_CACHE", str(tmp_path / "bound"))
    bound = default_resources()["storage"]
    assert isinstance(bound.serving_cache, dg.EnvVar) and bound.serving_cache.env_var_name == "TIKTOK_SERVING_CACHE"
    storage = resolved(bound)
    assert storage.serving_cache == str(tmp_path / "bound")
    writer = storage.serving_location
    assert isinstance(writer, S3Root) and writer.uri == uri
    assert writer.cache_dir.parent == tmp_path / "bound"
    ServingPublisher(writer).publish(new_tables(), now_s=1, dense=dense_for(1), full=True)
    assert list_versions(uri) == [1]
    assert (writer.cache_dir / "v00000001").is_dir()  # the publisher's copy, where the field says

    # another host's reader, its cache given on the resource: the environment's folder stays unused
    monkeypatch.setenv("TIKTOK_SERVING_CACHE", str(tmp_path / "environment"))
    reader = PlatformStorage(data_dir=str(tmp_path / "data"), serving_uri=uri,
                             serving_cache=str(tmp_path / "given")).serving_location
    assert reader.cache_dir.parent == tmp_path / "given"
    state = load_latest(reader)
    assert state is not None and state.seq == 1
    assert (reader.cache_dir / "v00000001").is_dir() and not (tmp_path / "environment").exists()


def test_models_dir_is_the_dbt_like_resources_and_sets_the_assets(tmp_path):
    """TIKTOK_MODELS_DIR binds dbt_like.models_dir, read when the code location loads: the real
    Definitions, loaded with it pointing at a copy of dbt_like_models/ less one mart, have that
    mart's asset (and its checks) no more, and nothing else changes."""
    models = tmp_path / "models"
    shutil.copytree(REPO / "dbt_like_models", models)
    (models / "marts" / "ad_suggestions.sql").unlink()  # a leaf: no model refs it
    default = _load_location({})
    moved = _load_location({"TIKTOK_MODELS_DIR": str(models)})
    assert default["models_dir"] is None and default["models_path"] == str(REPO / "dbt_like_models")
    assert moved["models_dir"] == {"env": "TIKTOK_MODELS_DIR"} and moved["models_path"] == str(models)
    assert set(default["assets"]) - set(moved["assets"]) == {"marts/ad_suggestions"}
    assert set(moved["assets"]) < set(default["assets"])
    assert {c for c in default["checks"] if c.startswith("marts/ad_suggestions:")}
    assert set(default["checks"]) - set(moved["checks"]) == {
        c for c in default["checks"] if c.startswith("marts/ad_suggestions:")}


_LOAD = """
import json
import dagster as dg
from tiktok_pipelines.definitions import defs
from tiktok_pipelines.defs.dbt_like.external import models_dir
d = defs()
graph = d.resolve_asset_graph()
field = d.resources["dbt_like"].models_dir
print(json.dumps({
    "models_dir": {"env": field.env_var_name} if isinstance(field, dg.EnvVar) else field,
    "models_path": str(models_dir()),
    "assets": sorted(k.to_user_string() for k in graph.get_all_asset_keys()),
    "checks": sorted(c.to_user_string() for c in graph.asset_check_keys),
}))
"""


def _load_location(env: dict[str, str]) -> dict:
    """The code location as a fresh process loads it (the SQL models are read once, at import)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TIKTOK_")}
    out = subprocess.run([sys.executable, "-c", _LOAD], env={**base, "OMP_NUM_THREADS": "1", **env}, cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])


def test_the_clis_defaults_are_the_tables(monkeypatch):
    for s in settings.SETTINGS:
        monkeypatch.delenv(s.env, raising=False)
    args = build_parser().parse_args(["ingest"])
    assert (args.data_dir, args.lake, args.future_skew_seconds, args.max_lateness_days) == ("data", None, 300, 30)
    monkeypatch.setenv("TIKTOK_DATA_DIR", "/srv/data")
    monkeypatch.setenv("TIKTOK_MAX_LATENESS_DAYS", "3")
    args = build_parser().parse_args(["ingest"])
    assert (args.data_dir, args.max_lateness_days) == ("/srv/data", 3)


def _reads_environment_at_import(tree: ast.Module) -> list[int]:
    """Lines outside any function or lambda body that name os.environ, os.getenv or getenv (a
    function's decorators and default values run at import, so they count)."""
    found = []

    def visit(node, in_function):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and not in_function:
            evaluated_now = [*getattr(node, "decorator_list", []), *node.args.defaults,
                             *(d for d in node.args.kw_defaults if d is not None)]
            for child in evaluated_now:
                visit(child, False)
            in_function = True
        if not in_function:
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
                found.append(node.lineno)
            if isinstance(node, ast.Name) and node.id in ("environ", "getenv"):
                found.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child, in_function)

    visit(tree, False)
    return found


def test_no_module_reads_the_environment_at_import_time():
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        lines = _reads_environment_at_import(parse(path.read_text(), str(path)))
        if lines:
            offenders[str(path.relative_to(REPO))] = lines
    assert offenders == {}


# Imports every module of the package with os.environ spied on: which TIKTOK_* variables were read.
_SPY = """
import importlib, json, os, pkgutil, sys
import tiktok_pipelines
read = set()
PACKAGE = os.path.dirname(tiktok_pipelines.__file__)
def note(key):
    # who asked: the first caller outside os and the Mapping methods (a library that copies the
    # whole environment, as some do at import, is not reading a setting)
    frame = sys._getframe(2)
    while frame.f_code.co_filename.endswith(("os.py", "_collections_abc.py", "os>", "_collections_abc>")):
        frame = frame.f_back
    if str(key).startswith("TIKTOK_") and frame.f_code.co_filename.startswith(PACKAGE):
        read.add(key)
class Spy(type(os.environ)):
    def __getitem__(self, key):
        note(key)
        return super().__getitem__(key)
    def __contains__(self, key):
        note(key)
        return super().__contains__(key)
os.environ.__class__ = Spy
names = [m.name for m in pkgutil.walk_packages(tiktok_pipelines.__path__, "tiktok_pipelines.")]
location = ("tiktok_pipelines.definitions", "tiktok_pipelines.defs.")
for name in names:  # the core, the CLI, and the defs' resources and policies modules
    if not name.startswith(location) or name in (
            "tiktok_pipelines.defs.resources", "tiktok_pipelines.defs.ops.policies"):
        importlib.import_module(name)
core = sorted(read)
for name in names:  # the asset modules: importing them is loading the code location
    importlib.import_module(name)
location_load = sorted(read)
read.clear()
from tiktok_pipelines import settings
settings.value("TIKTOK_DATA_DIR")  # the spy sees a read when one happens
print(json.dumps([core, location_load, sorted(read)]))
"""


def test_importing_every_module_reads_no_setting():
    """The import-time check by running it: an indirect read (a module constant computed by a
    function that reads the environment) shows here, where the source scan above cannot see it.
    Importing the asset modules is loading the code location: their decorators take the retry and
    freshness policies and the SQL models, the "load" settings, and nothing else."""
    env = {**os.environ, **{s.env: str(s.default) for s in settings.SETTINGS if s.default is not None}}
    out = subprocess.run([sys.executable, "-c", _SPY], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    core, location_load, after = json.loads(out.stdout.splitlines()[-1])
    assert core == []
    assert location_load == sorted(s.env for s in settings.SETTINGS if s.read == "load")
    assert after == ["TIKTOK_DATA_DIR"]


def test_operations_md_lists_the_settings_as_generated():
    text = (REPO / "docs" / "operations.md").read_text()
    assert BEGIN in text and END in text, "docs/operations.md lost its settings markers"
    block = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert block == settings.markdown_table(), (
        "docs/operations.md is stale: replace the block between the settings markers with "
        "python -c 'from tiktok_pipelines import settings; print(settings.markdown_table())'")
