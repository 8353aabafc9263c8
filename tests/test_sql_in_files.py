"""SQL lives in ``.sql`` files (issue 18): no Python string in ``tiktok_pipelines/`` longer than a
few lines looks like SQL, and the ``.sql`` files the code loads are found and fully rendered.

A string "looks like SQL" when at least two of its lines start with a SQL clause keyword
(SELECT, FROM, WHERE, JOIN, GROUP BY, WITH, CREATE, ...). Docstrings are prose and are skipped;
an f-string is judged on its literal parts, since its placeholders are what Python fills in.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.pyast import parse
from tiktok_pipelines import sqlfiles

PACKAGE = Path(__file__).resolve().parents[1] / "tiktok_pipelines"
MAX_LINES = 5  # a longer SQL string belongs in a .sql file
CLAUSE = re.compile(r"^\s*(SELECT|FROM|WHERE|(LEFT |INNER |ASOF )?JOIN|GROUP BY|ORDER BY|HAVING|UNION|WITH|"
                    r"CREATE|INSERT|UPDATE|DELETE|MERGE|QUALIFY)\b", re.I | re.M)
# Modules whose SQL is still to move to .sql files (none left). Each entry must still
# hold such a string (so the list cannot go stale): whoever moves one removes its entry.
PENDING: set[str] = set()


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def sql_strings(source: str) -> list[tuple[int, int]]:
    """(line, lines) of every string constant or f-string in ``source`` that looks like SQL and
    is longer than MAX_LINES lines."""
    tree = parse(source)
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip |= {id(v) for v in node.values}  # judged as part of their f-string
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
        else:
            continue
        lines = text.strip().count("\n") + 1
        if lines > MAX_LINES and len(CLAUSE.findall(text)) >= 2:
            found.append((node.lineno, lines))
    return sorted(found)


def _offenders() -> dict[str, list[tuple[int, int]]]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        hits = sql_strings(path.read_text(encoding="utf-8"))
        if hits:
            out[path.relative_to(PACKAGE).as_posix()] = hits
    return out


def test_the_scan_finds_sql_in_strings_and_nothing_else():
    sql = '''
def f(con, t):
    """SELECT a docstring
    FROM prose
    WHERE nothing runs
    GROUP BY it
    ORDER BY line
    is skipped"""
    con.execute(f"""
        SELECT a, b
        FROM {t}
        WHERE a > 1
        GROUP BY a, b
        ORDER BY a
    """)
    short = "SELECT a\\nFROM t\\nWHERE b"
    prose = "\\n".join(["one", "two", "three", "four", "five", "six", "seven"])
'''
    assert sql_strings(sql) == []  # 5 lines: at the limit, allowed
    longer = sql.replace("ORDER BY a\n", "ORDER BY a\n        LIMIT 10\n")
    assert sql_strings(longer) == [(9, 6)]


def test_no_sql_longer_than_a_few_lines_in_python():
    offenders = _offenders()
    moved = sorted(PENDING - set(offenders))
    assert not moved, f"no SQL string left in {moved}: remove them from PENDING"
    left = {path: hits for path, hits in offenders.items() if path not in PENDING}
    assert not left, ("SQL strings (line, lines) in Python; move them to a .sql file beside the code, "
                      f"loaded with tiktok_pipelines.sqlfiles.load_sql: {left}")


SQL_FILES = sorted(PACKAGE.rglob("sql/*.sql"))


def test_sql_files_are_found_by_package():
    assert SQL_FILES, "no .sql file under tiktok_pipelines/*/sql/"
    for path in SQL_FILES:
        package = ".".join(path.parent.parent.relative_to(PACKAGE.parent).parts)
        assert sqlfiles.placeholders(package, path.stem) is not None


def test_load_sql_fills_every_placeholder_and_refuses_strays():
    sql = sqlfiles.load_sql("tiktok_pipelines.attribution", "ad_touches", relation="ev")
    assert "FROM ev WHERE" in sql and "$" not in sql
    with pytest.raises(KeyError):
        sqlfiles.load_sql("tiktok_pipelines.attribution", "ad_touches")
    with pytest.raises(ValueError, match="no placeholder"):
        sqlfiles.load_sql("tiktok_pipelines.attribution", "ad_touches", relation="ev", table="x")


MODELS = Path(__file__).resolve().parents[1] / "dbt_like_models"
TAG = re.compile(r"\{\{.*?\}\}", re.S)
# NOT MATERIALIZED: DuckDB would otherwise copy an input read more than once (int_user_segments:
# 44 -> 146 ms on the marts tests' warehouse) instead of scanning it where it is used.
IMPORT = re.compile(r"(\w+) AS NOT MATERIALIZED \(\n    SELECT \* FROM (\{\{.*?\}\})\n\)", re.S)


@pytest.mark.parametrize("path", sorted(MODELS.glob("*/*.sql")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_models_import_their_inputs_at_the_top_and_end_in_final(path):
    """dbt's style: one import CTE per input opens the WITH, no ref/source anywhere else, and the
    model ends in ``SELECT * FROM final``."""
    body = path.read_text(encoding="utf-8").split("--- */", 1)[1].strip()
    assert body.startswith("WITH "), "a model opens with its import CTEs"
    assert body.endswith("\nSELECT * FROM final"), "a model ends in SELECT * FROM final"
    assert "\nfinal AS (\n" in body
    imports, pos = [], len("WITH ")
    while m := IMPORT.match(body, pos):
        imports.append(m.group(2))
        pos = m.end() + (1 if body[m.end():m.end() + 1] == "," else 0)
        pos += len(body[pos:]) - len(body[pos:].lstrip("\n"))
    assert imports, "no import CTE at the top"
    tags = TAG.findall(body)
    assert sorted(tags) == sorted(imports) and len(set(imports)) == len(imports), (
        "every ref/source appears once, in an import CTE at the top")
