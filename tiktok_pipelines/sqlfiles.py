"""SQL kept in ``.sql`` files beside the code that runs it, loaded by name (no Dagster import).

A module's queries live in the ``sql/`` folder of its package (``features/sql/user_features.sql``
for ``tiktok_pipelines.features``), read with ``importlib.resources`` so they are found in a
non-editable install too (``pyproject.toml`` ships ``*.sql`` as package data). A query whose
shape depends on configuration (a column per window, a literal cutoff) is a template: its
``${name}`` placeholders are filled by one rendering function in Python, which builds the
generated parts (``string.Template`` syntax: braces stay free for DuckDB's struct and map
literals, and ``$$`` is a literal ``$``). Every placeholder must be given and every parameter
used, so a renamed placeholder fails loudly instead of leaving ``${x}`` in the SQL.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from string import Template


@cache
def _template(package: str, name: str) -> Template:
    return Template(files(package).joinpath("sql", f"{name}.sql").read_text(encoding="utf-8"))


def placeholders(package: str, name: str) -> set[str]:
    """The ``${name}`` placeholders of ``<package>/sql/<name>.sql``."""
    t = _template(package, name)
    return {m.group("named") or m.group("braced") for m in t.pattern.finditer(t.template)
            if m.group("named") or m.group("braced")}


def load_sql(package: str, name: str, **params: object) -> str:
    """The SQL of ``<package>/sql/<name>.sql`` with its placeholders filled from ``params``
    (each rendered with ``str``). Raises KeyError for a missing placeholder, ValueError for a
    parameter the file does not use."""
    unused = set(params) - placeholders(package, name)
    if unused:
        raise ValueError(f"{package}/sql/{name}.sql has no placeholder for {sorted(unused)}")
    return _template(package, name).substitute({k: str(v) for k, v in params.items()})
