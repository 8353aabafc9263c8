"""The Dagster shell stays thin (issue 18): every asset, check, sensor and schedule function under
``defs/`` is at most MAX_BODY_LINES long, so its logic lives in the core (``tiktok_pipelines/<domain>``),
where it is tested without Dagster; and sensors live in their domain's ``sensors.py``."""

from __future__ import annotations

import ast
from pathlib import Path

import tiktok_pipelines
from tests.pyast import parse

DEFS = Path(tiktok_pipelines.__file__).parent / "defs"
MAX_BODY_LINES = 45
# Definitions still long, each waiting for its part of issue 18 ("<file> <function>"): none left.
PENDING: set[str] = set()
DECORATORS = {"asset", "multi_asset", "graph_asset", "graph_multi_asset", "asset_check", "multi_asset_check",
              "sensor", "multi_asset_sensor", "asset_sensor", "run_status_sensor", "run_failure_sensor",
              "schedule"}
SENSORS = DECORATORS & {"sensor", "multi_asset_sensor", "asset_sensor", "run_status_sensor", "run_failure_sensor"}


def _decorator_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else None


def _definitions() -> list[tuple[Path, ast.FunctionDef, set[str]]]:
    found = []
    for path in sorted(DEFS.rglob("*.py")):
        for node in ast.walk(parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = {_decorator_name(d) for d in node.decorator_list} & DECORATORS
                if names:
                    found.append((path, node, names))
    return found


def body_lines(node: ast.FunctionDef) -> int:
    """Lines from the first statement of the body (its docstring, if any) to the last."""
    return node.end_lineno - node.body[0].lineno + 1


def test_the_scan_finds_the_definitions() -> None:
    names = {node.name for _, node, _ in _definitions()}
    # decorated inside a factory (_build, _asset) as well as at module level
    assert {"batch_rankers", "attribution_marts", "ingest_landing", "landing_sensor", "online_ranker"} <= names


def test_no_definition_function_is_long() -> None:
    long = {f"{path.relative_to(DEFS)} {node.name}": body_lines(node)
            for path, node, _ in _definitions() if body_lines(node) > MAX_BODY_LINES}
    thin = sorted(PENDING - set(long))
    assert not thin, f"{thin} are thin now: remove them from PENDING"
    left = {name: n for name, n in long.items() if name not in PENDING}
    assert not left, f"logic belongs in the core, the asset maps its report to metadata (lines): {left}"


def test_sensors_live_in_their_domains_sensors_module() -> None:
    misplaced = [f"{path.relative_to(DEFS)} {node.name}" for path, node, names in _definitions()
                 if names & SENSORS and path.name != "sensors.py"]
    assert not misplaced
    assert {path.parent.name for path, _, names in _definitions() if names & SENSORS} >= {"ingest", "training", "features", "ops"}


def test_body_lines_counts_from_the_first_statement() -> None:
    fn = ast.parse("@dg.asset\ndef f():\n    '''doc'''\n    x = 1\n\n    return x\n").body[0]
    assert body_lines(fn) == 4


def test_the_core_has_no_dagster_import() -> None:
    """Outside defs/ only the code location (definitions.py) and the CLI, which runs jobs, import Dagster."""
    package = DEFS.parent
    importers = set()
    for path in package.rglob("*.py"):
        if DEFS in path.parents:
            continue
        for node in ast.walk(parse(path.read_text(), filename=str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "dagster" or n.startswith(("dagster.", "dagster_")) for n in names):
                importers.add(str(path.relative_to(package)))
    assert importers == {"definitions.py", "cli.py"}
