"""Configuration as resources: every TIKTOK_* setting of tiktok_pipelines/settings.py is a field of
its resource with the table's default, bound to dg.EnvVar where its variable is set; nothing in the
package reads the environment at import time; docs/operations.md carries the table as generated."""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from tiktok_pipelines import settings
from tiktok_pipelines.cli import build_parser
from tiktok_pipelines.defs.resources import RESOURCE_CLASSES, default_resources, from_environment, resolved

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "tiktok_pipelines"
BEGIN, END = "<!-- settings:begin (generated from tiktok_pipelines/settings.py) -->", "<!-- settings:end -->"


def test_every_setting_is_a_resource_field_with_the_tables_default():
    for s in settings.SETTINGS:
        assert s.env.startswith("TIKTOK_")
        if not s.resource:
            assert s.read in ("load", "open"), s.env  # read by the core where it is used, documented
            continue
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
        lines = _reads_environment_at_import(ast.parse(path.read_text(), str(path)))
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
