"""The data dictionary: markdown for analysts, generated from the model headers (never by hand)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tiktok_pipelines.dbt_like.project import Model, Project

LAYER_DOCS = {
    "marts": "What analysts query: one relation per question (creators, ads, audience, attribution).",
    "intermediate": "Building blocks joined and aggregated from staging, shared by several marts.",
    "staging": "Typed views over the raw event lake (`raw.*`) and the catalog (`dims.*`), one per source; "
               "`day` and `ts` are UTC.",
}


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|") or "–"


def _upstream(project: Project, m: Model) -> str:
    parts = []
    for r in m.refs:
        if r in project.models:
            parts.append(f"`{project.models[r].relation}`")
        elif r in project.seeds:
            parts.append(f"`{project.seeds[r].relation}` (seed)")
        else:
            parts.append(f"`{project.external[r][1]}` (built in Python: `{r}`)")
    parts += [f"`{s}` (source)" for s in m.sources]
    return ", ".join(parts) or "–"


def data_dictionary(project: Project) -> str:
    from tiktok_pipelines.dbt_like.project import LAYERS

    used_by: dict[str, list[str]] = {}
    for m in project.models.values():
        for r in m.refs:
            used_by.setdefault(r, []).append(m.relation)
    root = project.root.name
    out = [
        "# Data dictionary",
        "",
        f"Generated from the headers of the SQL models in `{root}/` by `tiktok-pipelines models docs`: do not",
        "edit by hand (a test fails when this file and the models disagree). Every relation below lives in",
        "`warehouse.duckdb` and in the analysts' read-only copy `analytics.duckdb`; query it by the name in",
        "the heading, e.g. `SELECT * FROM marts.<name>`.",
        "",
        "Tests run as Dagster asset checks after each build: `not_null`, `unique` (a non-NULL value on one",
        "row only), `accepted_values`, `relationships` (every non-NULL value exists in the target) and",
        "`unique_key` (the key combination is unique). \"(warn)\" marks a test whose failure is a warning.",
        "",
        "## Contents",
        "",
    ]
    for layer in reversed(LAYERS):
        names = sorted(n for n, m in project.models.items() if m.layer == layer)
        out.append(f"- **{layer}**: " + (", ".join(f"`{layer}.{n}`" for n in names) or "–"))
    if project.seeds:
        out.append("- **seeds**: " + ", ".join(f"`seeds.{n}`" for n in sorted(project.seeds)))
    if project.external:
        out.append("- **built in Python**: " + ", ".join(f"`{rel}`" for _, rel in
                                                      sorted(project.external.values(), key=lambda x: x[1])))
    for layer in reversed(LAYERS):
        models = sorted((m for m in project.models.values() if m.layer == layer), key=lambda m: m.name)
        out += ["", f"## {layer}", "", LAYER_DOCS[layer]]
        for m in models:
            out += ["", f"### `{m.relation}`", "", " ".join(m.description.split()), "",
                    "| | |", "|---|---|",
                    f"| materialized | {m.materialized} |"]
            if m.unique_key:
                out.append(f"| unique key | {', '.join(f'`{c}`' for c in m.unique_key)} |")
            out.append(f"| upstream | {_upstream(project, m)} |")
            users = sorted(used_by.get(m.name, []))
            out.append(f"| used by | {', '.join(f'`{u}`' for u in users) or '–'} |")
            out.append(f"| file | `{m.display_path}` |")
            if m.columns:
                out += ["", "| column | description | tests |", "|---|---|---|"]
                for c in m.columns.values():
                    tests = "; ".join(t.short() for t in c.tests) or "–"
                    out.append(f"| `{c.name}` | {_cell(c.description)} | {_cell(tests)} |")
    if project.seeds:
        out += ["", "## seeds", "", (f"Configuration as CSV files in `{root}/seeds/` (rates, revenue shares, "
                "targets), loaded as tables with types inferred from the file. Change the CSV, not the SQL.")]
        for name in sorted(project.seeds):
            s = project.seeds[name]
            users = sorted(used_by.get(name, []))
            out += ["", f"### `{s.relation}`", "", "| | |", "|---|---|",
                    f"| columns | {', '.join(f'`{c}`' for c in s.columns)} |",
                    f"| used by | {', '.join(f'`{u}`' for u in users) or '–'} |",
                    f"| file | `{s.display_path}` |"]
    if project.external:
        out += ["", "## Built in Python", "",
                "Relations that Python assets build; SQL models use them with `{{ ref('<name>') }}`.", "",
                "| ref name | relation | used by |", "|---|---|---|"]
        for name in sorted(project.external):
            users = sorted(used_by.get(name, []))
            out.append(f"| `{name}` | `{project.external[name][1]}` | {', '.join(f'`{u}`' for u in users) or '–'} |")
    return "\n".join(out) + "\n"
