"""``dbt_like_models/`` as Dagster assets: one asset per seed and per SQL model, column tests as checks.

One asset per model (rather than one multi-asset for the project) so that each model is its own
step: a failing model fails alone with its file in the message, its downstream models are skipped,
independent ones still build, and each can be selected and re-run by itself. Every model writes
``warehouse.duckdb``, so each asset is in the ``duckdb_warehouse`` pool (one writer at a time).

Keys: ``[layer, name]`` without the file's layer prefix (``external.model_asset_key``):
``["staging", "views"]`` for ``stg_views``, ``["intermediate", "creator_views_daily"]``,
``["marts", "creator_daily"]``, ``["seeds", name]`` for seeds; the group is the layer; the relation
keeps the file's name (``staging.stg_views``). Dependencies are the relations the SQL reads:
``{{ ref() }}`` -> that model, seed or Python asset (``external.py``); ``{{ source('raw', s) }}`` ->
the lake asset ``raw_<s>`` (``quarantine``, ``ingest_log``), ``{{ source('dims', n) }}`` -> the
catalog asset ``dim_<n>`` that publishes ``dims/<n>``. A model that reads sources (re)creates
exactly those ``raw.*``/``dims.*`` relations in its own step, at the lake's committed versions,
before it builds (``refresh_lake_views(relations=...)``): so it never reads a refresh some other
step may not have made, and the graph shows what it reads.
Column tests are asset checks (blocking=False: a failed test is reported, it does not stop downstream
models). They run in the model's step right after the build, except relationships tests whose target
is not upstream of the model (``stg_views.video_id`` -> ``stg_videos``): those wait, in one check step
per model, until the target is built too (a source target: that step refreshes the relation first).
Check names are ``<test>_<column>`` (``not_null_creator_id``);
unique, not_null and unique_key fail as ERROR, relationships as WARN (late-arriving dimension rows),
accepted_values as ERROR; a header's ``severity:`` overrides.
"""

import dagster as dg

from tiktok_pipelines.dbt_like import ColumnTest, Model, Project, Seed
from tiktok_pipelines.defs.dbt_like.external import load_models, model_asset_key
from tiktok_pipelines.defs.catalog.assets import dim_key
from tiktok_pipelines.defs.ingest.assets import INGEST_LOG_KEY, QUARANTINE_KEY, raw_key
from tiktok_pipelines.defs.ops.policies import (
    ANALYTICS_FRESHNESS,
    TRANSIENT_RETRY,
    retry_only_transient,
)
from tiktok_pipelines.defs.resources import PlatformStorage
from tiktok_pipelines.defs.warehouse.assets import WAREHOUSE_POOL
from tiktok_pipelines.warehouse import LAKE_VERSIONS, refresh_lake_views

SEVERITY = {"error": dg.AssetCheckSeverity.ERROR, "warn": dg.AssetCheckSeverity.WARN}


def model_key(project: Project, name: str) -> dg.AssetKey:
    """The asset key of a model, seed or external model."""
    if name in project.external:
        return project.external[name][0]
    node = project.node(name)
    return model_asset_key(node.layer, node.name)


# source('raw', s) for the lake's own tables: the ingest assets that commit them.
_RAW_KEYS = {"quarantine": QUARANTINE_KEY, "ingest_log": INGEST_LOG_KEY}


def source_key(source: str) -> dg.AssetKey:
    """The asset that writes the lake table behind ``{{ source() }}`` relation ``source``
    ("raw.views" -> ``raw_views``, "raw.quarantine" -> ``quarantine``, "dims.users" -> ``dim_users``)."""
    schema, table = source.split(".", 1)
    if schema == "raw":
        return _RAW_KEYS.get(table) or raw_key(table)
    if schema == "dims":
        return dim_key(table)
    raise ValueError(f"no asset writes source {source!r}: sources are raw.* and dims.*")


def _deps(project: Project, model: Model) -> list[dg.AssetKey]:
    """The assets of the relations the model's SQL reads, in order of first use."""
    return [model_key(project, r) for r in model.refs] + [source_key(s) for s in model.sources]


def _sql_md(sql: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"```sql\n{sql}\n```")


def _declared_schema(model: Model) -> dg.TableSchema:
    cols = []
    for c in model.columns.values():
        kinds = {t.kind for t in c.tests}
        other = [t.short() for t in c.tests if t.kind not in ("not_null", "unique")]
        cols.append(dg.TableColumn(
            c.name, type="", description=c.description or None,
            constraints=dg.TableColumnConstraints(nullable="not_null" not in kinds, unique="unique" in kinds,
                                                  other=other),
        ))
    return dg.TableSchema(columns=cols)


def _built_schema(model: Model | Seed, columns: tuple[tuple[str, str], ...]) -> dg.TableSchema:
    docs = {c.lower(): col.description for c, col in model.columns.items()} if isinstance(model, Model) else {}
    return dg.TableSchema(columns=[dg.TableColumn(n, type=t, description=docs.get(n.lower()) or None)
                                   for n, t in columns])


def _ancestors(project: Project) -> dict[str, set[dg.AssetKey]]:
    """Every asset key each model depends on, directly or not (through other models)."""
    out: dict[str, set[dg.AssetKey]] = {}
    for node in project.order():
        if not isinstance(node, Model):
            continue
        keys = set(_deps(project, node))
        for r in node.refs:
            keys |= out.get(r, set())
        out[node.name] = keys
    return out


def _target_key(project: Project, t: ColumnTest) -> dg.AssetKey:
    kind, args = t.to  # type: ignore[misc]
    return source_key(".".join(args)) if kind == "source" else model_key(project, args[0])


def _refresh_sources(con, storage: PlatformStorage, sources) -> dg.MetadataValue | None:
    """(Re)create ``sources`` ("raw.views", "dims.users") at the lake's committed versions; returns
    what was read (relation, lake version, rows) as a table for the step's metadata."""
    sources = sorted(set(sources))
    if not sources:
        return None
    counts = refresh_lake_views(con, storage.lake_location, storage.lake_store, relations=sources)
    versions = dict(con.execute(f"SELECT relation, version FROM {LAKE_VERSIONS}").fetchall())
    # dims.* are read at their newest version and not recorded; a dim never published is left out
    rows = [f"| {r} | {'' if versions.get(r) is None else versions[r]} | {counts[r]:,} |"
            for r in sources if r in counts]
    return dg.MetadataValue.md("| relation | lake version | rows |\n|---|---|---|\n" + "\n".join(rows))


def _deferred(project: Project, model: Model, ancestors: dict[str, set[dg.AssetKey]]) -> list[ColumnTest]:
    """Relationships tests whose target is not upstream of the model. They cannot run in the
    model's own step (the target may not be built yet), so they run in a check step of their own
    that waits for the model and every target."""
    own = model_key(project, model.name)
    return [t for t in model.tests if t.kind == "relationships"
            and _target_key(project, t) not in ancestors[model.name] | {own}]


def _check_spec(key: dg.AssetKey, t: ColumnTest, additional: list[dg.AssetKey] | None = None) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        t.name, asset=key, description=f"{t.description} ({t.severity} when it fails)",
        blocking=False, additional_deps=additional,
        metadata={"test": t.kind, "column": t.column, "severity": t.severity},
    )


def _check_results(project: Project, model: Model, con, names: set[str]) -> list[dg.AssetCheckResult]:
    tests = {t.name: t for t in model.tests}
    checks = []
    for r in project.test(con, select=[model.name], tests=names):
        meta = {"failing_rows": r.failing_rows if r.failing_rows is not None else -1, "sql": _sql_md(r.sql),
                "test": tests[r.name].description}
        if r.error:
            meta["error"] = r.error
        checks.append(dg.AssetCheckResult(asset_key=model_key(project, model.name), check_name=r.name,
                                          passed=r.passed, severity=SEVERITY[r.severity], metadata=meta))
    return checks


def _deferred_checks(project: Project, model: Model, tests: list[ColumnTest]) -> dg.AssetChecksDefinition:
    key = model_key(project, model.name)

    @dg.multi_asset_check(
        name=f"{'__'.join(key.path)}__relationships",  # beside the model's step: staging__views
        specs=[_check_spec(key, t, [_target_key(project, t)]) for t in tests],
        pool=WAREHOUSE_POOL,
        can_subset=True,
        description=f"Relationships tests of {model.relation} against models built in other steps.",
        retry_policy=TRANSIENT_RETRY,
    )
    @retry_only_transient
    def _run(context: dg.AssetCheckExecutionContext, storage: PlatformStorage):
        wanted = {k.name for k in context.selected_asset_check_keys}
        with storage.warehouse_db.connect() as con:  # read-write: it refreshes the sources it reads
            # A source target is not built by any model step here: read it as the lake has it now.
            _refresh_sources(con, storage, [t.to_relation for t in tests
                                            if t.name in wanted and t.to and t.to[0] == "source"])
            checks = _check_results(project, model, con, wanted)
        yield from checks

    return _run


def _model_asset(project: Project, model: Model, deferred: list[ColumnTest]) -> dg.AssetsDefinition:
    key = model_key(project, model.name)
    deps = _deps(project, model)
    in_step = [t for t in model.tests if t not in deferred]

    @dg.asset(
        key=key,
        group_name=model.layer,
        kinds={"duckdb", "sql"},
        pool=WAREHOUSE_POOL,
        description=model.description,
        deps=deps,
        check_specs=[_check_spec(key, t) for t in in_step],
        code_version=model.code_version,
        metadata={
            "dagster/column_schema": _declared_schema(model),
            "relation": model.relation,
            "materialized": model.materialized,
            "path": dg.MetadataValue.path(model.display_path),
        },
        retry_policy=TRANSIENT_RETRY,  # a DuckDB lock; a model that does not build fails at once
        # what analysts read: the marts, rebuilt hourly (docs/operations.md)
        freshness_policy=ANALYTICS_FRESHNESS if model.layer == "marts" else None,
    )
    @retry_only_transient
    def _build(context: dg.AssetExecutionContext, storage: PlatformStorage) -> dg.MaterializeResult:
        wanted = {k.name for k in context.selected_asset_check_keys}
        with storage.warehouse_db.connect() as con:
            read = _refresh_sources(con, storage, model.sources)
            (built,) = project.build(con, select=[model.name])
            checks = _check_results(project, model, con, wanted)
            con.execute("CHECKPOINT")
        failed = [f"{c.check_name} ({c.metadata['failing_rows'].value} rows)" for c in checks if not c.passed]
        if failed:
            context.log.warning(f"{model.relation}: failed tests: {', '.join(failed)}")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": built.rows,
                "relation": model.relation,
                "dagster/relation_identifier": f"{storage.warehouse.stem}.{model.relation}",
                "dagster/column_schema": _built_schema(model, built.columns),
                "sql": _sql_md(built.sql),
                "seconds": round(built.seconds, 3),
                **({"sources_read": read} if read is not None else {}),
            },
            check_results=checks,
        )

    return _build


def _seed_asset(project: Project, seed: Seed) -> dg.AssetsDefinition:
    @dg.asset(
        key=model_key(project, seed.name),
        group_name=seed.layer,
        kinds={"duckdb", "csv"},
        pool=WAREHOUSE_POOL,
        description=f"Configuration from {seed.display_path}, loaded as table {seed.relation} "
                    "(types inferred by DuckDB's read_csv). Change the CSV, not the SQL.",
        code_version=seed.code_version,
        metadata={
            "dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn(c, type="") for c in seed.columns]),
            "relation": seed.relation,
            "path": dg.MetadataValue.path(seed.display_path),
        },
        retry_policy=TRANSIENT_RETRY,
    )
    @retry_only_transient
    def _load(storage: PlatformStorage) -> dg.MaterializeResult:
        with storage.warehouse_db.connect() as con:
            (built,) = project.build(con, select=[seed.name])
            con.execute("CHECKPOINT")
        return dg.MaterializeResult(metadata={
            "dagster/row_count": built.rows,
            "relation": seed.relation,
            "dagster/relation_identifier": f"{storage.warehouse.stem}.{seed.relation}",
            "dagster/column_schema": _built_schema(seed, built.columns),
            "sql": _sql_md(built.sql),
        })

    return _load


def build_analytics_assets(project: Project) -> list[dg.AssetsDefinition | dg.AssetChecksDefinition]:
    """One asset per seed and model; plus, per model with relationships tests on targets that are
    not upstream of it, one check step that runs them once both sides are built."""
    ancestors = _ancestors(project)
    # Two files whose names differ only by the layer prefix (stg_x and x) would share a key.
    seen: dict[dg.AssetKey, str] = {}
    for node in project.order():
        key = model_key(project, node.name)
        if key in seen:
            raise ValueError(f"{node.display_path} and {seen[key]} would both be asset {key.to_user_string()} "
                             "(a model's key drops its layer prefix stg_/int_): rename one")
        seen[key] = node.display_path
    out: list[dg.AssetsDefinition | dg.AssetChecksDefinition] = []
    for node in project.order():
        if isinstance(node, Seed):
            out.append(_seed_asset(project, node))
            continue
        deferred = _deferred(project, node, ancestors)
        out.append(_model_asset(project, node, deferred))
        if deferred:
            out.append(_deferred_checks(project, node, deferred))
    return out


# Loaded at import: an invalid model stops the code location from loading, with its file and line.
PROJECT = load_models()
analytics_assets = build_analytics_assets(PROJECT)
