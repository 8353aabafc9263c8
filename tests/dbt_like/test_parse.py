"""Parsing, rendering and every refusal, each with the exact file and line an author would fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dbt_like.conftest import EXTERNAL, header, write
from tiktok_pipelines.dbt_like import LAYER_RULE, ModelError, Seed, load_project

IDENT = "a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*)"


def refusal(root: Path, files: dict[str, str]) -> str:
    write(root, files)
    with pytest.raises(ModelError) as e:
        load_project(root, external=EXTERNAL)
    return str(e.value)


def test_render_refs_sources_seeds_and_externals(models_root):
    write(models_root, {
        "README.md": "not a model: ignored",
        "seeds/rates.csv": "key,value\nx,1\n",
        "staging/stg_a.sql": header() + "SELECT * FROM {{ source('raw', 'views') }}\n",
        # Spaces, either quote, several tags on a line, a trailing ';'.
        "intermediate/int_b.sql": header() + (
            "SELECT * FROM {{ref(\"stg_a\")}} JOIN {{  ref( 'rates' )  }} ON true\n"
            "JOIN {{ source(\"dims\",'users') }} USING (user_id)\n"
            "JOIN {{ ref('video_tags') }} USING (video_id);\n"),
        # A tag may span lines; repeated ';' go too.
        "marts/c.sql": header(materialized="table") + "SELECT 1 AS x FROM {{ ref('int_b') }}, {{\n  ref('stg_a')\n}};;\n",
    })
    p = load_project(models_root, external=EXTERNAL)
    b = p.models["int_b"]
    assert b.sql == ("SELECT * FROM staging.stg_a JOIN seeds.rates ON true\n"
                     "JOIN dims.users USING (user_id)\n"
                     "JOIN content.video_tags USING (video_id)")
    assert b.refs == ("stg_a", "rates", "video_tags") and b.sources == ("dims.users",)
    assert (b.layer, b.materialized, b.description, b.relation) == ("intermediate", "view", "A test model.",
                                                                    "intermediate.int_b")
    assert b.path == models_root / "intermediate" / "int_b.sql"
    assert "{{" in b.raw_sql and "/*" not in b.sql  # the header is not part of the SQL
    c = p.models["c"]
    assert c.sql == "SELECT 1 AS x FROM intermediate.int_b, staging.stg_a"
    assert c.refs == ("int_b", "stg_a") and c.materialized == "table"
    assert [n.name for n in p.order()] == ["rates", "stg_a", "int_b", "c"]
    assert isinstance(p.seeds["rates"], Seed) and p.seeds["rates"].columns == ("key", "value")
    assert p.external["video_tags"][1] == "content.video_tags"
    # The code version changes with the file, and only with it.
    before = c.code_version
    (models_root / "marts" / "c.sql").write_text(header(materialized="table") + "SELECT 2 AS x\n")
    assert load_project(models_root, external=EXTERNAL).models["c"].code_version != before
    assert load_project(models_root, external=EXTERNAL).models["int_b"].code_version == b.code_version


def test_header_columns_tests_and_defaults(models_root):
    write(models_root, {
        "staging/stg_a.sql": header(extra="unique_key: [a, day]\ncolumns:\n  a:\n    description: The a.\n"
                                    "    tests: [not_null, unique, {accepted_values: {values: [x, 2, true]}}]\n"
                                    "  day:\n  b:\n    description: B.\n    tests:\n"
                                    "      - relationships: {to: \"source('dims', 'users')\", field: user_id}\n"
                                    "      - {not_null: {severity: warn}}\n")
        + "SELECT 1 AS a, 2 AS b, current_date AS day\n",
        "staging/stg_b.sql": "/* ---\ndescription: No materialization given.\n--- */\nSELECT 1\n",
    })
    p = load_project(models_root)
    m = p.models["stg_a"]
    assert list(m.columns) == ["a", "day", "b"] and m.columns["day"].description == ""
    assert m.unique_key == ("a", "day")
    by_name = {t.name: t for t in m.tests}
    assert list(by_name) == ["not_null_a", "unique_a", "accepted_values_a", "relationships_b", "not_null_b",
                             "unique_key_a_day"]
    assert by_name["accepted_values_a"].values == ("x", 2, True)
    assert "NOT IN ('x', '2', 'true')" in by_name["accepted_values_a"].sql
    rel = by_name["relationships_b"]
    assert (rel.to_relation, rel.field, rel.severity, rel.line) == ("dims.users", "user_id", "warn", 13)
    assert by_name["not_null_b"].severity == "warn" and by_name["not_null_a"].severity == "error"
    assert by_name["unique_key_a_day"].severity == "error"
    assert p.models["stg_b"].materialized == "view"  # dbt's default


def _m(sql_line: str = "SELECT 1", **kw) -> str:
    return header(**kw) + sql_line + "\n"


# (files, the exact error). header() puts '/* ---' on line 1, materialized on 2, description on 3,
# any extra YAML from line 4, then '--- */'; the body follows.
REFUSALS = {
    "unknown ref": (
        {"marts/m.sql": header() + "SELECT 1\nFROM {{ ref('nope') }}\n"},
        "dbt_like_models/marts/m.sql:6: unknown ref 'nope': no model, seed or external model has that name"),
    "unknown ref, case": (
        {"staging/stg_a.sql": _m(), "marts/m.sql": _m("SELECT * FROM {{ ref('STG_A') }}")},
        ("dbt_like_models/marts/m.sql:5: unknown ref 'STG_A': no model, seed or external model has that name "
        "(did you mean 'stg_a'?)")),
    "unknown source": (
        {"staging/s.sql": _m("SELECT * FROM {{ source('raw', 'clicks') }}")},
        ("dbt_like_models/staging/s.sql:5: unknown source raw.clicks (raw has: impressions, views, interactions, "
        "ad_events, live_gifts, orders, quarantine, ingest_log)")),
    "unknown source schema": (
        {"staging/s.sql": _m("SELECT * FROM {{ source('lake', 'views') }}")},
        "dbt_like_models/staging/s.sql:5: unknown source schema 'lake' (sources: raw.<table>, dims.<table>)"),
    "cycle": (
        {"intermediate/int_a.sql": _m("SELECT * FROM {{ ref('int_b') }}"),
         "intermediate/int_b.sql": header() + "SELECT 1\n-- x\nUNION ALL SELECT * FROM {{ ref('int_a') }}\n"},
        "dbt_like_models/intermediate/int_b.sql:7: dependency cycle: int_a -> int_b -> int_a"),
    "cycle of three": (
        {"marts/a.sql": _m("SELECT * FROM {{ ref('b') }}"), "marts/b.sql": _m("SELECT * FROM {{ ref('c') }}"),
         "marts/c.sql": _m("SELECT * FROM {{ ref('a') }}")},
        "dbt_like_models/marts/c.sql:5: dependency cycle: a -> b -> c -> a"),
    "self reference": (
        {"marts/a.sql": _m("SELECT * FROM {{ ref('a') }}")},
        "dbt_like_models/marts/a.sql:5: dependency cycle: a -> a"),
    "file stem": (
        {"staging/stg-views.sql": _m()},
        f"dbt_like_models/staging/stg-views.sql:1: model name 'stg-views' (the file name) is not {IDENT}"),
    "file stem with a digit first": (
        {"marts/1st.sql": _m()},
        f"dbt_like_models/marts/1st.sql:1: model name '1st' (the file name) is not {IDENT}"),
    "column name": (
        {"marts/m.sql": _m(extra="columns:\n  a:\n    description: fine\n  bad-col:\n    description: x\n")},
        f"dbt_like_models/marts/m.sql:7: column name 'bad-col' is not {IDENT}"),
    "duplicate column, case": (
        {"marts/m.sql": _m(extra="columns:\n  a:\n  A:\n")},
        ("dbt_like_models/marts/m.sql:6: column 'A' is listed twice (as 'a' before; DuckDB compares identifiers "
        "case-insensitively)")),
    "ref target": (
        {"marts/m.sql": _m("SELECT * FROM {{ ref('stg.views') }}")},
        f"dbt_like_models/marts/m.sql:5: ref target 'stg.views' is not {IDENT}"),
    "source name": (
        {"marts/m.sql": _m("SELECT * FROM {{ source('raw', 'views; DROP TABLE x') }}")},
        f"dbt_like_models/marts/m.sql:5: source name 'views; DROP TABLE x' is not {IDENT}"),
    "seed name": (
        {"seeds/my-rates.csv": "key,value\n"},
        f"dbt_like_models/seeds/my-rates.csv:1: seed name 'my-rates' (the file name) is not {IDENT}"),
    "seed column": (
        {"seeds/rates.csv": "key,the value\nx,1\n"},
        f"dbt_like_models/seeds/rates.csv:1: seed column 'the value' is not {IDENT}"),
    "empty seed": (
        {"seeds/rates.csv": ""},
        "dbt_like_models/seeds/rates.csv:1: empty seed: the first line names the columns"),
    "unknown header key": (
        {"marts/m.sql": _m(extra="tags: [x]\n")},
        ("dbt_like_models/marts/m.sql:4: unknown header key 'tags' (keys: materialized, description, unique_key, "
        "columns)")),
    "bad materialization": (
        {"marts/m.sql": _m(materialized="ephemeral")},
        "dbt_like_models/marts/m.sql:2: materialized must be one of table, view, not 'ephemeral'"),
    "unknown test": (
        {"marts/m.sql": _m(extra="columns:\n  a:\n    tests: [not_null, uniq]\n")},
        ("dbt_like_models/marts/m.sql:6: unknown test 'uniq' on column 'a' (tests: unique, not_null, "
        "accepted_values, relationships)")),
    "unknown test argument": (
        {"marts/m.sql": _m(extra="columns:\n  a:\n    tests:\n      - not_null\n"
                                 "      - {accepted_values: {vals: [1]}}\n")},
        ("dbt_like_models/marts/m.sql:8: accepted_values on 'a': unknown argument 'vals' (arguments: severity, "
        "values)")),
    "unknown column key": (
        {"marts/m.sql": _m(extra="columns:\n  a:\n    descripton: typo\n")},
        "dbt_like_models/marts/m.sql:6: unknown key 'descripton' for column 'a' (keys: description, tests)"),
    "bad severity": (
        {"marts/m.sql": _m(extra="columns:\n  a:\n    tests: [{unique: {severity: fatal}}]\n")},
        "dbt_like_models/marts/m.sql:6: unique on 'a': severity must be error or warn, not 'fatal'"),
    "unique_key naming no listed column": (
        {"marts/m.sql": _m(extra="unique_key: [a, b]\ncolumns:\n  a:\n    description: x\n")},
        "dbt_like_models/marts/m.sql:4: unique_key names 'b', which the header's columns do not list"),
    "empty unique_key": (
        {"marts/m.sql": _m(extra="unique_key: []\n")},
        "dbt_like_models/marts/m.sql:4: unique_key must name a column or a non-empty list of columns"),
    "relationships to an unknown ref": (
        {"marts/m.sql": _m(extra="columns:\n  a:\n    tests: [{relationships: {to: \"ref('ghost')\", field: id}}]\n")},
        "dbt_like_models/marts/m.sql:6: unknown ref 'ghost': no model, seed or external model has that name"),
    "relationships without a field": (
        {"marts/m.sql": _m(extra="columns:\n  a:\n    tests: [{relationships: {to: \"source('dims', 'users')\"}}]\n")},
        (f"dbt_like_models/marts/m.sql:6: relationships on 'a' needs field: a column of the target, {IDENT} "
        "(got None)")),
    "two tests of one kind": (
        {"marts/m.sql": _m(extra="columns:\n  a:\n    tests:\n      - not_null\n      - not_null\n")},
        ("dbt_like_models/marts/m.sql:8: two tests named 'not_null_a' on 'm' (first on line 7): each test of a "
        "column must be of a different kind")),
    "no description": (
        {"marts/m.sql": "/* ---\nmaterialized: table\n--- */\nSELECT 1\n"},
        ("dbt_like_models/marts/m.sql:1: the header needs a description (one or two sentences for analysts: what "
        "one row is, what the model is for)")),
    "no header": (
        {"marts/m.sql": "\nSELECT 1\n"},
        ("dbt_like_models/marts/m.sql:2: a model starts with a header: '/* ---' on its own line, YAML "
        "(materialized, description, columns), then '--- */' (see dbt_like_models/README.md)")),
    "header never closed": (
        {"marts/m.sql": "/* ---\nmaterialized: view\nSELECT 1\n"},
        "dbt_like_models/marts/m.sql:1: the header opened here is never closed with '--- */'"),
    "duplicate header key": (
        {"marts/m.sql": "/* ---\nmaterialized: view\ndescription: d\nmaterialized: table\n--- */\nSELECT 1\n"},
        "dbt_like_models/marts/m.sql:4: duplicate key 'materialized' in the header"),
    "no SQL": (
        {"marts/m.sql": header() + "  ;\n"},
        "dbt_like_models/marts/m.sql:1: no SQL after the header"),
    "duplicate name across layers": (
        {"staging/dup.sql": _m(), "marts/dup.sql": _m()},
        ("dbt_like_models/marts/dup.sql:1: model name 'dup' is already used by dbt_like_models/staging/dup.sql "
        "(names are unique across layers, seeds and external models)")),
    "duplicate name, case": (
        {"staging/Dup.sql": _m(), "intermediate/dup.sql": _m()},
        ("dbt_like_models/intermediate/dup.sql:1: model name 'dup' is already used by "
        "dbt_like_models/staging/Dup.sql (names are unique across layers, seeds and external models)")),
    "model named like a seed": (
        {"seeds/rates.csv": "key,value\n", "staging/rates.sql": _m()},
        ("dbt_like_models/staging/rates.sql:1: model name 'rates' is already used by dbt_like_models/seeds/rates.csv "
        "(names are unique across layers, seeds and external models)")),
    "model named like an external": (
        {"marts/video_tags.sql": _m()},
        ("dbt_like_models/marts/video_tags.sql:1: model name 'video_tags' is already used by the external model "
        "'video_tags' (content.video_tags, built in Python) (names are unique across layers, seeds and external "
        "models)")),
    "unknown layer": (
        {"reports/x.sql": _m()},
        ("dbt_like_models/reports/x.sql:1: model in unknown layer 'reports': models live directly in staging/, "
        "intermediate/, marts/ (seeds in seeds/ as .csv)")),
    "model at the top": (
        {"x.sql": _m()},
        ("dbt_like_models/x.sql:1: model in unknown layer '(the top folder)': models live directly in staging/, "
        "intermediate/, marts/ (seeds in seeds/ as .csv)")),
    "model in a subfolder": (
        {"marts/sub/x.sql": _m()},
        "dbt_like_models/marts/sub/x.sql:1: models live directly in marts/, not in a subfolder"),
    "csv outside seeds": (
        {"marts/x.csv": "a\n"},
        "dbt_like_models/marts/x.csv:1: CSV outside seeds/: seeds live directly in seeds/"),
    "staging refs marts": (
        {"marts/m.sql": _m(), "staging/stg_x.sql": header() + "SELECT *\nFROM {{ ref('m') }}\n"},
        f"dbt_like_models/staging/stg_x.sql:6: staging model 'stg_x' refs marts model 'm': {LAYER_RULE}"),
    "intermediate refs marts": (
        {"marts/m.sql": _m(), "intermediate/int_x.sql": _m("SELECT * FROM {{ ref('m') }}")},
        f"dbt_like_models/intermediate/int_x.sql:5: intermediate model 'int_x' refs marts model 'm': {LAYER_RULE}"),
    "jinja statement": (
        {"marts/m.sql": header() + "SELECT 1\n{% if is_incremental() %} WHERE x {% endif %}\n"},
        ("dbt_like_models/marts/m.sql:6: Jinja statements {% if is_incremental() %} are not supported; only "
        "{{ ref('model') }} and {{ source('schema', 'table') }} are supported")),
    "other expression": (
        {"marts/m.sql": _m("SELECT {{ var('x') }}")},
        ("dbt_like_models/marts/m.sql:5: cannot render {{ var('x') }}: only {{ ref('model') }} and "
        "{{ source('schema', 'table') }} are supported")),
    "ref with a filter": (
        {"marts/m.sql": _m("SELECT * FROM {{ ref('a') | upper }}")},
        ("dbt_like_models/marts/m.sql:5: cannot render {{ ref('a') | upper }}: only {{ ref('model') }} and "
        "{{ source('schema', 'table') }} are supported")),
    "two-argument ref": (
        {"marts/m.sql": _m("SELECT * FROM {{ ref('pkg', 'a') }}")},
        ("dbt_like_models/marts/m.sql:5: cannot render {{ ref('pkg', 'a') }}: only {{ ref('model') }} and "
        "{{ source('schema', 'table') }} are supported")),
    "unquoted ref": (
        {"marts/m.sql": _m("SELECT * FROM {{ ref(a) }}")},
        ("dbt_like_models/marts/m.sql:5: cannot render {{ ref(a) }}: only {{ ref('model') }} and "
        "{{ source('schema', 'table') }} are supported")),
    "jinja comment": (
        {"marts/m.sql": _m("SELECT 1 {# note #}")},
        ("dbt_like_models/marts/m.sql:5: Jinja comments {# #} are not supported: use SQL comments; only "
        "{{ ref('model') }} and {{ source('schema', 'table') }} are supported")),
    "unclosed tag": (
        {"marts/m.sql": header() + "SELECT 1\nFROM {{ ref('a')\n"},
        "dbt_like_models/marts/m.sql:6: '{{' is never closed with '}}'"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_name_file_and_line(models_root, case):
    files, expected = REFUSALS[case]
    assert refusal(models_root, files) == expected


def test_yaml_syntax_error_points_at_its_line(models_root):
    msg = refusal(models_root, {"marts/m.sql": "/* ---\nmaterialized: view\ndescription: d\ncolumns:\n"
                                               "  a: [unclosed\n  b:\n--- */\nSELECT 1\n"})
    assert msg.startswith("dbt_like_models/marts/m.sql:6: header is not valid YAML")


def test_what_the_rules_allow(models_root):
    """Same-layer refs, seeds and external models from staging, and non-SQL files are all fine."""
    write(models_root, {
        "seeds/rates.csv": "key,value\n",
        "staging/stg_a.sql": _m("SELECT * FROM {{ ref('rates') }}, {{ ref('video_tags') }}"),
        "staging/stg_b.sql": _m("SELECT * FROM {{ ref('stg_a') }}"),
        "marts/m.sql": _m("SELECT * FROM {{ ref('stg_b') }}, {{ source('raw', 'quarantine') }}, "
                          "{{ source('raw', 'ingest_log') }}, {{ source('dims', 'campaigns') }}"),
        "marts/notes.md": "# notes",
        ".hidden/x.sql": "garbage",
    })
    p = load_project(models_root, external=EXTERNAL)
    assert [n.name for n in p.order()] == ["rates", "stg_a", "stg_b", "m"]
    assert p.downstream("stg_a") == {"stg_b", "m"} and p.downstream("m") == set()
    with pytest.raises(KeyError):
        p.order(["nope"])
