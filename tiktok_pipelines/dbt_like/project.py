"""A folder of dbt-like SQL models and CSV seeds, validated as a whole, built and tested in DuckDB.

Layout (``dbt_like_models/``)::

    staging/<name>.sql        -> view or table  staging.<name>
    intermediate/<name>.sql   -> intermediate.<name>
    marts/<name>.sql          -> marts.<name>
    seeds/<name>.csv          -> table seeds.<name> (types inferred by DuckDB's read_csv)

Rules checked at load time (each refusal names the file and line, see :class:`ModelError`):

- names (file stems, header columns, ref targets, sources, seed columns) are plain SQL identifiers;
- a model name is unique across layers, seeds and external models (case-insensitively, as DuckDB
  compares identifiers);
- ``{{ ref('x') }}`` names a model, a seed or an external model (built in Python); ``{{ source('a', 'b') }}``
  names a relation the warehouse asset creates (``raw.<stream>``, ``raw.quarantine``,
  ``raw.ingest_log``, ``dims.<catalog table>``);
- layer order: a model may ref models of its own layer or an earlier one
  (staging < intermediate < marts); seeds and external models may be ref'd from any layer;
- no dependency cycles (the error spells the cycle out);
- the header holds only known keys, a known materialization and known tests; ``unique_key`` names
  columns the header lists.

No Dagster import: ``tiktok_pipelines/defs/dbt_like/assets.py`` turns a :class:`Project` into assets.
"""

from __future__ import annotations

import csv
import hashlib
import heapq
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from tiktok_pipelines.dbt_like.parse import (
    IDENTIFIER_RULE,
    Header,
    ModelError,
    ParsedFile,
    is_identifier,
    parse_call,
    parse_model_file,
    render,
)
from tiktok_pipelines.schemas import CATALOG, STREAMS

LAYERS = ("staging", "intermediate", "marts")
SEEDS_DIR = "seeds"
MATERIALIZATIONS = ("table", "view")
DEFAULT_MATERIALIZATION = "view"
HEADER_KEYS = ("materialized", "description", "unique_key", "columns")
COLUMN_KEYS = ("description", "tests")
TEST_KINDS = ("unique", "not_null", "accepted_values", "relationships")
SEVERITIES = ("error", "warn")
# A duplicate or NULL key breaks every join downstream: error. A relationships miss is usually a
# late-arriving dimension row (an event for a video the catalog export has not caught up with): warn.
DEFAULT_SEVERITY = {"unique": "error", "not_null": "error", "accepted_values": "error",
                    "relationships": "warn", "unique_key": "error"}
LAYER_RULE = ("a model may ref models of its own layer or an earlier one (staging < intermediate < marts); "
              "seeds and external models may be ref'd from any layer")
TMP_PREFIX = "__dbt_like_building_"


def default_sources() -> dict[str, tuple[str, ...]]:
    """What ``warehouse_lake_tables`` creates: the relations ``{{ source() }}`` may name."""
    return {"raw": (*STREAMS, "quarantine", "ingest_log"), "dims": tuple(CATALOG)}


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _qrel(relation: str) -> str:
    return ".".join(_q(p) for p in relation.split("."))


def _literal(v: object) -> str:
    if isinstance(v, bool):
        v = "true" if v else "false"
    return "'" + str(v).replace("'", "''") + "'"


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# ------------------------------------------------------------------ the parts


@dataclass(frozen=True)
class ColumnTest:
    """One test from a header; ``sql`` counts the failing rows."""

    model: str
    column: str  # for unique_key: the key columns joined by ", "
    kind: str  # unique | not_null | accepted_values | relationships | unique_key
    name: str  # asset check name, e.g. not_null_creator_id
    severity: str  # error | warn
    line: int
    sql: str
    values: tuple = ()
    to: tuple[str, tuple[str, ...]] | None = None  # ("ref", ("x",)) | ("source", ("a", "b"))
    to_relation: str | None = None
    field: str | None = None
    columns: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        if self.kind == "accepted_values":
            return f"{self.column} is one of: {', '.join(map(str, self.values))} (NULL allowed)"
        if self.kind == "relationships":
            return f"every non-NULL {self.column} appears in {self.to_relation}.{self.field}"
        if self.kind == "unique_key":
            return f"no two rows share ({self.column})"
        if self.kind == "unique":
            return f"no two rows share a non-NULL {self.column}"
        return f"{self.column} is never NULL"

    def short(self) -> str:
        """As the data dictionary shows it."""
        sev = " (warn)" if self.severity == "warn" else ""
        if self.kind == "accepted_values":
            return f"accepted_values: {', '.join(map(str, self.values))}{sev}"
        if self.kind == "relationships":
            return f"relationships: `{self.to_relation}.{self.field}`{sev}"
        return f"{self.kind}{sev}"


@dataclass(frozen=True)
class Column:
    name: str
    description: str
    tests: tuple[ColumnTest, ...] = ()


@dataclass
class Model:
    name: str
    layer: str
    path: Path
    materialized: str
    description: str
    columns: dict[str, Column]
    unique_key: tuple[str, ...]
    refs: tuple[str, ...]  # models, seeds and external models, in order of first use
    sources: tuple[str, ...]  # "schema.table", in order of first use
    sql: str  # rendered: every tag replaced by its relation
    raw_sql: str = ""  # the body as written
    display_path: str = ""  # "dbt_like_models/<layer>/<name>.sql", as errors name it
    tests: tuple[ColumnTest, ...] = ()
    code_version: str = ""  # hash of the file
    ref_lines: dict[str, int] = field(default_factory=dict)

    @property
    def relation(self) -> str:
        return f"{self.layer}.{self.name}"


@dataclass
class Seed:
    name: str
    path: Path
    columns: tuple[str, ...] = ()
    display_path: str = ""
    code_version: str = ""
    layer = SEEDS_DIR
    materialized = "table"

    @property
    def relation(self) -> str:
        return f"{SEEDS_DIR}.{self.name}"


@dataclass(frozen=True)
class TestResult:
    __test__ = False  # not a pytest test class, whatever module imports it

    model: str
    column: str
    test: str  # the kind: unique | not_null | accepted_values | relationships | unique_key
    passed: bool
    failing_rows: int | None  # None when the test query itself failed (see error)
    sql: str
    name: str = ""
    severity: str = "error"
    error: str | None = None


@dataclass(frozen=True)
class BuildResult:
    name: str
    relation: str
    materialized: str  # table | view (seeds: table)
    rows: int | None
    columns: tuple[tuple[str, str], ...]  # (name, DuckDB type)
    seconds: float
    sql: str


class BuildError(RuntimeError):
    """A model or seed failed to build; the previous relation is left as it was."""


# ------------------------------------------------------------------ loading


def _display(root: Path, path: Path) -> str:
    return f"{root.name}/{path.relative_to(root).as_posix()}"


def _discover(root: Path) -> tuple[list[Path], list[Path]]:
    seeds, models = [], []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or any(p.startswith(".") or p == "__pycache__" for p in rel.parts):
            continue
        disp = _display(root, path)
        if path.suffix == ".sql":
            if len(rel.parts) > 2 and rel.parts[0] in LAYERS:
                raise ModelError(disp, 1, f"models live directly in {rel.parts[0]}/, not in a subfolder")
            if len(rel.parts) != 2 or rel.parts[0] not in LAYERS:
                where = rel.parts[0] if len(rel.parts) > 1 else "(the top folder)"
                raise ModelError(disp, 1, f"model in unknown layer {where!r}: models live directly in "
                                 f"{', '.join(l + '/' for l in LAYERS)} (seeds in {SEEDS_DIR}/ as .csv)")
            models.append(path)
        elif path.suffix == ".csv":
            if len(rel.parts) != 2 or rel.parts[0] != SEEDS_DIR:
                raise ModelError(disp, 1, f"CSV outside {SEEDS_DIR}/: seeds live directly in {SEEDS_DIR}/")
            seeds.append(path)
    models.sort(key=lambda p: (LAYERS.index(p.parent.name), p.stem))
    return seeds, models


def _load_seed(root: Path, path: Path) -> Seed:
    disp = _display(root, path)
    if not is_identifier(path.stem):
        raise ModelError(disp, 1, f"seed name {path.stem!r} (the file name) is not {IDENTIFIER_RULE}")
    with open(path, newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), None)
    if not header:
        raise ModelError(disp, 1, "empty seed: the first line names the columns")
    seen: set[str] = set()
    for col in header:
        if not is_identifier(col):
            raise ModelError(disp, 1, f"seed column {col!r} is not {IDENTIFIER_RULE}")
        if col.lower() in seen:
            raise ModelError(disp, 1, f"duplicate seed column {col!r}")
        seen.add(col.lower())
    return Seed(path.stem, path, tuple(header), disp, file_hash(path))


@dataclass
class _Draft:
    """A model whose header is checked but whose names are not yet resolved."""

    name: str
    layer: str
    path: Path
    display: str
    parsed: ParsedFile
    materialized: str
    description: str
    columns: dict[str, tuple[str, list[dict]]]  # name -> (description, raw test specs with lines)
    unique_key: tuple[str, ...]
    unique_key_line: int


def _check_header(name: str, layer: str, path: Path, display: str, parsed: ParsedFile) -> _Draft:
    """A model file's header checked key by key (known keys, materialization, a description, the
    columns with their tests, the unique key), in the order a reader meets them."""
    h: Header = parsed.header
    d = h.data
    for key in d:
        if key not in HEADER_KEYS:
            raise ModelError(display, h.line(key), f"unknown header key {key!r} (keys: {', '.join(HEADER_KEYS)})")
    mat = d.get("materialized", DEFAULT_MATERIALIZATION)
    if mat not in MATERIALIZATIONS:
        raise ModelError(display, h.line("materialized"),
                         f"materialized must be one of {', '.join(MATERIALIZATIONS)}, not {mat!r}")
    desc = d.get("description")
    if not isinstance(desc, str) or not desc.strip():
        raise ModelError(display, h.line("description"), "the header needs a description (one or two "
                         "sentences for analysts: what one row is, what the model is for)")
    columns = _check_columns(display, h)
    unique_key = _check_unique_key(display, h, columns)
    return _Draft(name, layer, path, display, parsed, mat, desc.strip(), columns, unique_key, h.line("unique_key"))


def _check_columns(display: str, h: Header) -> dict[str, tuple[str, list[dict]]]:
    """The header's ``columns``: name -> (description, checked test specs). A column may be given
    as a bare description; names are identifiers, unique case-insensitively."""
    cols_raw = h.data.get("columns") or {}
    if not isinstance(cols_raw, dict):
        raise ModelError(display, h.line("columns"), "columns must be a mapping: column name -> {description, tests}")
    columns: dict[str, tuple[str, list[dict]]] = {}
    seen: dict[str, str] = {}
    for col, spec in cols_raw.items():
        line = h.line("columns", col)
        if not is_identifier(col):
            raise ModelError(display, line, f"column name {col!r} is not {IDENTIFIER_RULE}")
        if col.lower() in seen:
            raise ModelError(display, line, f"column {col!r} is listed twice (as {seen[col.lower()]!r} before; "
                             "DuckDB compares identifiers case-insensitively)")
        seen[col.lower()] = col
        spec = spec if spec is not None else {}
        if isinstance(spec, str):
            spec = {"description": spec}
        if not isinstance(spec, dict):
            raise ModelError(display, line, f"column {col!r}: expected a mapping with description and tests")
        for key in spec:
            if key not in COLUMN_KEYS:
                raise ModelError(display, h.line("columns", col, key),
                                 f"unknown key {key!r} for column {col!r} (keys: {', '.join(COLUMN_KEYS)})")
        cdesc = spec.get("description") or ""
        if not isinstance(cdesc, str):
            raise ModelError(display, h.line("columns", col, "description"), f"column {col!r}: description must be text")
        tests = spec.get("tests") or []
        if not isinstance(tests, list):
            raise ModelError(display, h.line("columns", col, "tests"), f"column {col!r}: tests must be a list")
        columns[col] = (cdesc.strip(), [_check_test(display, h, col, i, t) for i, t in enumerate(tests)])
    return columns


def _check_unique_key(display: str, h: Header, columns: dict) -> tuple[str, ...]:
    """The header's ``unique_key`` (a column or a list of them, each one the header lists), or ()."""
    uk = h.data.get("unique_key")
    if uk is None:
        return ()
    keys = [uk] if isinstance(uk, str) else uk
    if not isinstance(keys, list) or not keys:
        raise ModelError(display, h.line("unique_key"), "unique_key must name a column or a non-empty list of columns")
    for i, k in enumerate(keys):
        if not is_identifier(k):
            raise ModelError(display, h.line("unique_key", i), f"unique_key column {k!r} is not {IDENTIFIER_RULE}")
        if k not in columns:
            raise ModelError(display, h.line("unique_key", i),
                             f"unique_key names {k!r}, which the header's columns do not list")
    if len(set(keys)) != len(keys):
        raise ModelError(display, h.line("unique_key"), "unique_key repeats a column")
    return tuple(keys)


def _check_test(display: str, h: Header, col: str, i: int, t: Any) -> dict:
    line = h.line("columns", col, "tests", i)
    if isinstance(t, str):
        kind, args = t, None
    elif isinstance(t, dict) and len(t) == 1:
        kind, args = next(iter(t.items()))
    else:
        raise ModelError(display, line, f"column {col!r}: a test is a name (unique, not_null) or a one-key "
                         "mapping such as {accepted_values: {values: [...]}}")
    if kind not in TEST_KINDS:
        raise ModelError(display, line, f"unknown test {kind!r} on column {col!r} (tests: {', '.join(TEST_KINDS)})")
    args = {} if args is None else args
    if not isinstance(args, dict):
        raise ModelError(display, line, f"{kind} on {col!r}: arguments must be a mapping")
    allowed = {"unique": {"severity"}, "not_null": {"severity"},
               "accepted_values": {"values", "severity"}, "relationships": {"to", "field", "severity"}}[kind]
    for a in args:
        if a not in allowed:
            raise ModelError(display, line, f"{kind} on {col!r}: unknown argument {a!r} (arguments: {', '.join(sorted(allowed))})")
    sev = args.get("severity", DEFAULT_SEVERITY[kind])
    if sev not in SEVERITIES:
        raise ModelError(display, line, f"{kind} on {col!r}: severity must be error or warn, not {sev!r}")
    out: dict[str, Any] = {"kind": kind, "severity": sev, "line": line}
    if kind == "accepted_values":
        values = args.get("values")
        if not isinstance(values, list) or not values or not all(isinstance(v, (str, int, float, bool)) for v in values):
            raise ModelError(display, line, f"accepted_values on {col!r} needs values: a non-empty list of plain values")
        out["values"] = tuple(values)
    elif kind == "relationships":
        to, fld = args.get("to"), args.get("field")
        call = None
        if isinstance(to, str):
            expr = to.strip()
            if expr.startswith("{{") and expr.endswith("}}"):
                expr = expr[2:-2]
            call = parse_call(expr)
        if call is None:
            raise ModelError(display, line, f"relationships on {col!r} needs to: \"ref('model')\" or "
                             f"\"source('schema', 'table')\", not {to!r}")
        for a in call[1]:
            if not is_identifier(a):
                raise ModelError(display, line, f"relationships on {col!r}: {a!r} is not {IDENTIFIER_RULE}")
        if not is_identifier(fld):
            raise ModelError(display, line, f"relationships on {col!r} needs field: a column of the target, "
                             f"{IDENTIFIER_RULE} (got {fld!r})")
        out["to"], out["field"] = call, fld
    return out


def load_project(
    root: Path | str,
    external: dict[str, tuple[Any, str]] | None = None,
    sources: dict[str, Iterable[str]] | None = None,
) -> Project:
    """Parse and validate every seed and model under ``root``; raise :class:`ModelError` on the first problem.

    ``external``: models built in Python, name -> (asset key, relation "schema.table"), ref'able
    by name. ``sources``: schema -> tables ``{{ source() }}`` may name (default: the warehouse's).

    Two passes: every name is claimed first (external models, seeds, model files with their
    headers), so the second pass can resolve each model's refs, sources and relationship tests
    against all of them whatever the file order; then the graph is checked for cycles.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no models folder at {root}")
    external = dict(external or {})
    srcs = {k: tuple(v) for k, v in (sources if sources is not None else default_sources()).items()}
    seed_paths, model_paths = _discover(root)
    names = _Names()
    names.claim_external(external)
    seeds = _load_seeds(root, seed_paths, names)
    drafts = _draft_models(root, model_paths, names)
    targets = _Targets(drafts=drafts, seeds=seeds, external=external, sources=srcs)
    models = {name: _resolve_model(draft, targets) for name, draft in drafts.items()}
    _check_cycles(models)
    return Project(root=root, models=models, seeds=seeds, external=external, sources=srcs)


class _Names:
    """The names and relations taken so far, to refuse a second owner with a message naming the
    first. Names compare case-insensitively, as DuckDB compares identifiers."""

    def __init__(self) -> None:
        self.owners: dict[str, str] = {}  # lower-cased name -> who has it
        self.relations: set[str] = set()  # lower-cased "schema.table" of the external models

    def claim_external(self, external: dict[str, tuple[Any, str]]) -> None:
        for name, (_key, relation) in external.items():
            parts = relation.split(".")
            if not is_identifier(name) or len(parts) != 2 or not all(map(is_identifier, parts)):
                raise ValueError(f"external model {name!r} -> {relation!r}: need an identifier and 'schema.table'")
            self.owners[name.lower()] = f"the external model {name!r} ({relation}, built in Python)"
            self.relations.add(relation.lower())

    def claim_seed(self, seed: Seed) -> None:
        if seed.name.lower() in self.owners:
            raise ModelError(seed.display_path, 1,
                             f"seed name {seed.name!r} is already used by {self.owners[seed.name.lower()]}")
        self.owners[seed.name.lower()] = seed.display_path

    def claim_model(self, name: str, layer: str, display: str) -> None:
        if not is_identifier(name):
            raise ModelError(display, 1, f"model name {name!r} (the file name) is not {IDENTIFIER_RULE}")
        if name.lower() in self.owners:
            raise ModelError(display, 1, f"model name {name!r} is already used by {self.owners[name.lower()]} "
                             "(names are unique across layers, seeds and external models)")
        self.owners[name.lower()] = display
        if f"{layer}.{name}".lower() in self.relations:
            raise ModelError(display, 1, f"relation {layer}.{name} is already an external model's relation")


def _load_seeds(root: Path, paths: list[Path], names: _Names) -> dict[str, Seed]:
    """Every seed CSV, its name claimed."""
    seeds: dict[str, Seed] = {}
    for path in paths:
        seed = _load_seed(root, path)
        names.claim_seed(seed)
        seeds[seed.name] = seed
    return seeds


def _draft_models(root: Path, paths: list[Path], names: _Names) -> dict[str, _Draft]:
    """Every model file parsed, its name claimed and its header checked; refs not yet resolved."""
    drafts: dict[str, _Draft] = {}
    for path in paths:
        disp = _display(root, path)
        name, layer = path.stem, path.parent.name
        names.claim_model(name, layer, disp)
        parsed = parse_model_file(path.read_text(encoding="utf-8"), disp)
        drafts[name] = _check_header(name, layer, path, disp, parsed)
    return drafts


@dataclass
class _Targets:
    """What a ``ref``/``source`` (or a relationships test's ``to``) may name, and its relation."""

    drafts: dict[str, _Draft]
    seeds: dict[str, Seed]
    external: dict[str, tuple[Any, str]]
    sources: dict[str, tuple[str, ...]]

    def check(self, draft: _Draft, kind: str, args: tuple[str, ...], line: int) -> None:
        """Raise a ModelError at ``line`` of ``draft`` unless the target exists."""
        if kind == "source":
            schema, table = args
            if schema not in self.sources:
                raise ModelError(draft.display, line, f"unknown source schema {schema!r} (sources: "
                                 f"{', '.join(f'{s}.<table>' for s in self.sources)})")
            if table not in self.sources[schema]:
                raise ModelError(draft.display, line,
                                 f"unknown source {schema}.{table} ({schema} has: {', '.join(self.sources[schema])})")
            return
        (n,) = args
        if n not in self.drafts and n not in self.seeds and n not in self.external:
            near = [m for m in (*self.drafts, *self.seeds, *self.external) if m.lower() == n.lower()]
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ModelError(draft.display, line, f"unknown ref {n!r}: no model, seed or external model has that "
                             f"name{hint}")

    def relation_of(self, kind: str, args: tuple[str, ...]) -> str:
        """The "schema.table" a checked target is built in."""
        if kind == "source":
            return f"{args[0]}.{args[1]}"
        (n,) = args
        if n in self.drafts:
            return f"{self.drafts[n].layer}.{n}"
        if n in self.seeds:
            return self.seeds[n].relation
        return self.external[n][1]


def _resolve_model(draft: _Draft, targets: _Targets) -> Model:
    """A draft made a Model: its refs and sources checked (existence, layer order), its SQL
    rendered with their relations, its tests made."""
    name = draft.name
    refs: dict[str, int] = {}
    used_sources: dict[str, int] = {}
    for tag in draft.parsed.tags:
        targets.check(draft, tag.kind, tag.args, tag.line)
        if tag.kind == "ref":
            target = tag.args[0]
            other = targets.drafts.get(target)
            if other is not None and LAYERS.index(other.layer) > LAYERS.index(draft.layer):
                raise ModelError(draft.display, tag.line, f"{draft.layer} model {name!r} refs "
                                 f"{other.layer} model {target!r}: {LAYER_RULE}")
            refs.setdefault(target, tag.line)
        else:
            used_sources.setdefault(".".join(tag.args), tag.line)
    sql = render(draft.parsed, {(t.kind, t.args): targets.relation_of(t.kind, t.args) for t in draft.parsed.tags})
    if not sql:
        raise ModelError(draft.display, draft.parsed.header.first_line, "no SQL after the header")
    columns, tests = _model_tests(draft, targets)
    return Model(
        name=name, layer=draft.layer, path=draft.path, materialized=draft.materialized,
        description=draft.description, columns=columns, unique_key=draft.unique_key,
        refs=tuple(refs), sources=tuple(used_sources), sql=sql,
        raw_sql=draft.parsed.body.strip(), display_path=draft.display, tests=tuple(tests),
        code_version=file_hash(draft.path), ref_lines=refs,
    )


def _model_tests(draft: _Draft, targets: _Targets) -> tuple[dict[str, Column], list[ColumnTest]]:
    """(the header's columns with their tests, every test of the model): the columns' tests in
    header order, then the unique_key test; two tests of one name (a kind twice on a column) are
    refused, since a test's name is its asset check's name."""
    name, relation = draft.name, f"{draft.layer}.{draft.name}"
    tests: list[ColumnTest] = []
    columns: dict[str, Column] = {}
    for col, (cdesc, specs) in draft.columns.items():
        col_tests = []
        for spec in specs:
            to_rel = None
            if spec["kind"] == "relationships":
                targets.check(draft, *spec["to"], spec["line"])
                to_rel = targets.relation_of(*spec["to"])
            col_tests.append(_make_test(name, relation, col, spec, to_rel))
        columns[col] = Column(col, cdesc, tuple(col_tests))
        tests.extend(col_tests)
    if draft.unique_key:
        cols = ", ".join(_q(c) for c in draft.unique_key)
        tests.append(ColumnTest(
            model=name, column=", ".join(draft.unique_key), kind="unique_key",
            name="unique_key_" + "_".join(draft.unique_key), severity="error", line=draft.unique_key_line,
            columns=draft.unique_key,
            sql=(f"SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM {_qrel(relation)} "
                 f"GROUP BY {cols} HAVING count(*) > 1)"),
        ))
    seen: dict[str, int] = {}
    for t in tests:
        if t.name in seen:
            raise ModelError(draft.display, t.line, f"two tests named {t.name!r} on {name!r} (first on line "
                             f"{seen[t.name]}): each test of a column must be of a different kind")
        seen[t.name] = t.line
    return columns, tests


def _make_test(model: str, relation: str, col: str, spec: dict, to_relation: str | None) -> ColumnTest:
    kind, rel, c = spec["kind"], _qrel(relation), _q(col)
    if kind == "not_null":
        sql = f"SELECT count(*) FROM {rel} WHERE {c} IS NULL"
    elif kind == "unique":
        # Failing rows = rows whose value another row shares (NULLs are not_null's business).
        sql = (f"SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM {rel} WHERE {c} IS NOT NULL "
               f"GROUP BY {c} HAVING count(*) > 1)")
    elif kind == "accepted_values":
        values = ", ".join(_literal(v) for v in spec["values"])
        sql = f"SELECT count(*) FROM {rel} WHERE {c} IS NOT NULL AND CAST({c} AS VARCHAR) NOT IN ({values})"
    else:
        # ANTI JOIN, not NOT IN: a NULL in the target would make NOT IN match nothing.
        sql = (f"SELECT count(*) FROM (SELECT {c} AS v FROM {rel} WHERE {c} IS NOT NULL) AS child "
               f"ANTI JOIN (SELECT {_q(spec['field'])} AS v FROM {_qrel(to_relation or '')}) AS parent "
               f"ON child.v = parent.v")
    return ColumnTest(
        model=model, column=col, kind=kind, name=f"{kind}_{col}", severity=spec["severity"],
        line=spec["line"], sql=sql, values=spec.get("values", ()), to=spec.get("to"),
        to_relation=to_relation, field=spec.get("field"),
    )


def _check_cycles(models: dict[str, Model]) -> None:
    state: dict[str, int] = {}  # 0: on the current path, 1: done
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 0
        stack.append(n)
        for r in models[n].refs:
            if r not in models:
                continue
            if state.get(r) == 0:
                cycle = stack[stack.index(r):] + [r]
                m = models[n]
                raise ModelError(m.display_path, m.ref_lines[r], f"dependency cycle: {' -> '.join(cycle)}")
            if r not in state:
                visit(r)
        stack.pop()
        state[n] = 1

    for name in sorted(models, key=lambda n: (LAYERS.index(models[n].layer), n)):
        if name not in state:
            visit(name)


# ------------------------------------------------------------------ the project


@dataclass
class Project:
    root: Path
    models: dict[str, Model]
    seeds: dict[str, Seed]
    external: dict[str, tuple[Any, str]]
    sources: dict[str, tuple[str, ...]]

    def node(self, name: str) -> Model | Seed:
        if name in self.models:
            return self.models[name]
        if name in self.seeds:
            return self.seeds[name]
        raise KeyError(f"no model or seed named {name!r}")

    def relation(self, name: str) -> str:
        if name in self.external:
            return self.external[name][1]
        return self.node(name).relation

    def downstream(self, name: str) -> set[str]:
        """Every model that depends on ``name``, directly or not."""
        children: dict[str, set[str]] = {}
        for m in self.models.values():
            for r in m.refs:
                children.setdefault(r, set()).add(m.name)
        out: set[str] = set()
        todo = [name]
        while todo:
            for c in children.get(todo.pop(), ()):
                if c not in out:
                    out.add(c)
                    todo.append(c)
        return out

    def order(self, select: Iterable[str] | None = None) -> list[Model | Seed]:
        """Seeds, then models in dependency order (ties: layer, then name); ``select`` keeps only those names."""
        wanted = None if select is None else set(select)
        if wanted is not None:
            for n in wanted:
                self.node(n)  # KeyError for an unknown name
        indegree = {n: sum(r in self.models for r in m.refs) for n, m in self.models.items()}
        children: dict[str, list[str]] = {}
        for m in self.models.values():
            for r in m.refs:
                if r in self.models:
                    children.setdefault(r, []).append(m.name)
        heap = [(LAYERS.index(self.models[n].layer), n) for n, d in indegree.items() if d == 0]
        heapq.heapify(heap)
        ordered: list[Model | Seed] = [self.seeds[n] for n in sorted(self.seeds)]
        while heap:
            _, n = heapq.heappop(heap)
            ordered.append(self.models[n])
            for c in children.get(n, ()):
                indegree[c] -= 1
                if indegree[c] == 0:
                    heapq.heappush(heap, (LAYERS.index(self.models[c].layer), c))
        return [x for x in ordered if wanted is None or x.name in wanted]

    # -------------------------------------------------------------- build

    def build(self, con: duckdb.DuckDBPyConnection, select: Iterable[str] | None = None, *,
              count_rows: bool = True) -> list[BuildResult]:
        """Create the schemas, load the selected seeds and build the selected models, in dependency
        order. Stops at the first failure with :class:`BuildError`; what it had built stays built,
        and the failing relation keeps its previous version."""
        nodes = self.order(select)
        for schema in (SEEDS_DIR, *LAYERS):
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(schema)}")
        results = []
        for node in nodes:
            if isinstance(node, Seed):
                # read_csv infers the types (integers, decimals, dates) from the file itself.
                sql = f"SELECT * FROM read_csv({_literal(node.path.absolute().as_posix())}, header = true)"
                results.append(self._materialize(con, node, "table", sql, node.columns, count_rows))
            else:
                results.append(self._materialize(con, node, node.materialized, node.sql, tuple(node.columns),
                                                 count_rows))
        return results

    def _materialize(self, con: duckdb.DuckDBPyConnection, node: Model | Seed, kind: str, sql: str,
                     documented: tuple[str, ...], count_rows: bool) -> BuildResult:
        schema, name = node.relation.split(".")
        target = f"{_q(schema)}.{_q(name)}"
        t0 = time.perf_counter()
        con.execute("BEGIN TRANSACTION")
        try:
            existing = con.execute(
                "SELECT table_type FROM information_schema.tables WHERE table_catalog = current_database() "
                "AND lower(table_schema) = lower(?) AND lower(table_name) = lower(?)", [schema, name],
            ).fetchall()
            existing_type = existing[0][0] if existing else None
            if kind == "table":
                # Build beside the old table, then swap: until COMMIT, readers and a failure see the old one.
                built = f"{_q(schema)}.{_q(TMP_PREFIX + name)}"
                con.execute(f"DROP TABLE IF EXISTS {built}")
                con.execute(f"CREATE TABLE {built} AS {sql}\n")
            else:
                if existing_type == "BASE TABLE":
                    con.execute(f"DROP TABLE {target}")
                con.execute(f"CREATE OR REPLACE VIEW {target} AS {sql}\n")
                built = target
            columns = tuple((r[0], r[1]) for r in con.execute(f"DESCRIBE {built}").fetchall())
            have = {c.lower() for c, _ in columns}
            missing = [c for c in documented if c.lower() not in have]
            if missing:
                raise BuildError(f"{node.display_path}: the header documents column(s) {', '.join(missing)} "
                                 f"that the query does not return (it returns: {', '.join(c for c, _ in columns)})")
            rows = con.execute(f"SELECT count(*) FROM {built}").fetchall()[0][0] if count_rows else None
            if kind == "view":
                # count(*) skips the columns, so compute every column of a sample: a runtime error
                # (a bad cast) fails the build here, inside the transaction, not an analyst's query.
                con.execute(f"SELECT * FROM {built} LIMIT 100").fetchall()
            if kind == "table":
                if existing_type == "VIEW":
                    con.execute(f"DROP VIEW {target}")
                elif existing_type is not None:
                    con.execute(f"DROP TABLE {target}")
                con.execute(f"ALTER TABLE {built} RENAME TO {_q(name)}")
            con.execute("COMMIT")
        except Exception as e:
            con.execute("ROLLBACK")
            if isinstance(e, BuildError):
                raise
            raise BuildError(f"{node.display_path}: building {node.relation} failed: {e}") from e
        return BuildResult(node.name, node.relation, kind, rows, columns, time.perf_counter() - t0, sql)

    # -------------------------------------------------------------- tests

    def test(self, con: duckdb.DuckDBPyConnection, select: Iterable[str] | None = None, *,
             tests: Iterable[str] | None = None) -> list[TestResult]:
        """Run the column tests (and unique_key) of the selected models; each counts failing rows.
        ``tests``: only the tests with these names (e.g. ``not_null_creator_id``)."""
        only = None if tests is None else set(tests)
        results = []
        for node in self.order(select):
            if not isinstance(node, Model):
                continue
            for t in node.tests:
                if only is not None and t.name not in only:
                    continue
                try:
                    n = int(con.execute(t.sql).fetchall()[0][0])
                    results.append(TestResult(t.model, t.column, t.kind, n == 0, n, t.sql, t.name, t.severity))
                except duckdb.Error as e:
                    results.append(TestResult(t.model, t.column, t.kind, False, None, t.sql, t.name, t.severity,
                                              error=str(e)))
        return results

    def data_dictionary(self) -> str:
        from tiktok_pipelines.dbt_like.docs import data_dictionary

        return data_dictionary(self)
