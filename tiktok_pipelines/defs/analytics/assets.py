"""``dbt_like_models/`` as Dagster assets: one asset per seed and per SQL model, column tests as checks.

One asset per model (rather than one multi-asset for the project) so that each model is its own
step: a failing model fails alone with its file in the message, its downstream models are skipped,
independent ones still build, and each can be selected and re-run by itself. Every model writes
``warehouse.duckdb``, so each asset is in the ``duckdb_warehouse`` pool (one writer at a time).

Keys: ``[layer, name]`` for models (``["staging", "stg_views"]``), ``["seeds", name]`` for seeds; the
group is the layer. Dependencies come from the SQL: ``{{ ref() }}`` -> that model, seed or Python
asset (``external.py``); ``{{ source() }}`` -> ``warehouse_lake_tables``, which creates ``raw.*`` and ``dims.*``.
Column tests are asset checks (blocking=False: a failed test is reported, it does not stop downstream
models). They run in the model's step right after the build, except relationships tests whose target
is not upstream of the model (``stg_views.video_id`` -> ``stg_videos``): those wait, in one check step
per model, until the target is built too. Check names are ``<test>_<column>`` (``not_null_creator_id``);
unique, not_null and unique_key fail as ERROR, relationships as WARN (late-arriving dimension rows),
accepted_values as ERROR; a header's ``severity:`` overrides.
"""

import dagster as dg

from tiktok_pipelines.dbt_like import ColumnTest, Model, Project, Seed
from tiktok_pipelines.defs.analytics.external import load_models
from tiktok_pipelines.defs.ops.policies import (
    ANALYTICS_FRESHNESS,
    TRANSIENT_RETRY,
    retry_only_transient,
)
from tiktok_pipelines.defs.resources import PlatformStorage
from tiktok_pipelines.defs.warehouse.assets import WAREHOUSE_POOL, warehouse_lake_tables
from tiktok_pipelines.warehouse import connect_warehouse

SEVERITY = {"error": dg.AssetCheckSeverity.ERROR, "warn": dg.AssetCheckSeverity.WARN}


def model_key(project: Project, name: str) -> dg.AssetKey:
    """The asset key of a model, seed or external model."""
    if name in project.external:
        return project.external[name][0]
    node = project.node(name)
    return dg.AssetKey([node.layer, node.name])


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
        keys = {model_key(project, r) for r in node.refs} | ({warehouse_lake_tables.key} if node.sources else set())
        for r in node.refs:
            keys |= out.get(r, set())
        out[node.name] = keys
    return out


def _target_key(project: Project, t: ColumnTest) -> dg.AssetKey:
    kind, args = t.to  # type: ignore[misc]
    return warehouse_lake_tables.key if kind == "source" else model_key(project, args[0])


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
        name=f"{model.layer}__{model.name}__relationships",
        specs=[_check_spec(key, t, [_target_key(project, t)]) for t in tests],
        pool=WAREHOUSE_POOL,
        can_subset=True,
        description=f"Relationships tests of {model.relation} against models built in other steps.",
        retry_policy=TRANSIENT_RETRY,
    )
    @retry_only_transient
    def _run(context: dg.AssetCheckExecutionContext, storage: PlatformStorage):
        wanted = {k.name for k in context.selected_asset_check_keys}
        con = connect_warehouse(storage.warehouse)
        try:
            checks = _check_results(project, model, con, wanted)
        finally:
            con.close()
        yield from checks

    return _run


def _model_asset(project: Project, model: Model, deferred: list[ColumnTest]) -> dg.AssetsDefinition:
    key = model_key(project, model.name)
    deps = [model_key(project, r) for r in model.refs]
    if model.sources:
        deps.append(warehouse_lake_tables.key)
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
        con = connect_warehouse(storage.warehouse)
        try:
            (built,) = project.build(con, select=[model.name])
            checks = _check_results(project, model, con, wanted)
            con.execute("CHECKPOINT")
        finally:
            con.close()
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
        con = connect_warehouse(storage.warehouse)
        try:
            (built,) = project.build(con, select=[seed.name])
            con.execute("CHECKPOINT")
        finally:
            con.close()
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
