"""The data dictionary: generated from the headers, written by the CLI, and never stale in the repo."""

from __future__ import annotations

import json
from pathlib import Path

from tests.dbt_like.conftest import EXTERNAL, header, write
from tiktok_pipelines.cli import main
from tiktok_pipelines.dbt_like import load_project
from tiktok_pipelines.defs.dbt_like.external import load_models, models_dir

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "data_dictionary.md"


def test_committed_data_dictionary_is_fresh():
    assert models_dir() == COMMITTED.parents[1] / "dbt_like_models"
    generated = load_models().data_dictionary()
    assert COMMITTED.read_text(encoding="utf-8") == generated, (
        "docs/data_dictionary.md is stale: run `tiktok-pipelines models docs`")


def _small(root: Path) -> Path:
    return write(root, {
        "seeds/rates.csv": "key,value,description\nx,1,d\n",
        "staging/stg_a.sql": header(description="Typed a.", extra=(
            "columns:\n  id:\n    description: The id | with a pipe.\n    tests: [not_null, unique]\n"
            "  kind:\n    tests: [{accepted_values: {values: [p, q], severity: warn}}]\n"))
        + "SELECT * FROM {{ source('raw', 'views') }}\n",
        "marts/m.sql": header(description="One row\n  per thing.", materialized="table",
                              extra="unique_key: [id]\ncolumns:\n  id:\n    description: The id.\n"
                                    "    tests: [{relationships: {to: \"ref('stg_a')\", field: id}}]\n")
        + "SELECT * FROM {{ ref('stg_a') }} JOIN {{ ref('rates') }} ON true JOIN {{ ref('video_tags') }} USING (id)\n",
    })


def test_dictionary_says_what_each_model_holds(models_root):
    md = load_project(_small(models_root), external=EXTERNAL).data_dictionary()
    # Marts first (what analysts query), then intermediate, staging, seeds, Python-built relations.
    assert md.index("## marts") < md.index("## intermediate") < md.index("## staging") < md.index("## seeds")
    assert md.index("## seeds") < md.index("## Built in Python")
    m = md[md.index("### `marts.m`"):md.index("## intermediate")]
    assert "One row per thing." in m
    assert "| materialized | table |" in m and "| unique key | `id` |" in m
    assert ("| upstream | `staging.stg_a`, `seeds.rates` (seed), `content.video_tags` (built in Python: "
            "`video_tags`) |") in m
    assert "| `id` | The id. | relationships: `staging.stg_a.id` (warn) |" in m
    a = md[md.index("### `staging.stg_a`"):md.index("## seeds")]
    assert "| upstream | `raw.views` (source) |" in a and "| used by | `marts.m` |" in a
    assert "| `id` | The id \\| with a pipe. | not_null; unique |" in a
    assert "| `kind` | – | accepted_values: p, q (warn) |" in a
    assert "| columns | `key`, `value`, `description` |" in md
    assert "| `video_tags` | `content.video_tags` | `marts.m` |" in md


def test_cli_writes_the_dictionary_and_checks_models(models_root, tmp_path, capsys, monkeypatch):
    _small(models_root)
    out = tmp_path / "docs" / "dd.md"
    assert main(["models", "docs", "--models-dir", str(models_root), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {"models": 2, "seeds": 1, "tests": 5, "out": str(out)}
    # The CLI uses the real external models (video_tags among them): same text as the library's.
    assert out.read_text() == load_models(models_root).data_dictionary()
    # TIKTOK_MODELS_DIR points the CLI (and the Dagster assets) at another folder.
    monkeypatch.setenv("TIKTOK_MODELS_DIR", str(models_root))
    assert main(["models", "check"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["models"] == 2
    (models_root / "marts" / "bad.sql").write_text(header() + "SELECT * FROM {{ ref('ghost') }}\n")
    assert main(["models", "check"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: dbt_like_models/marts/bad.sql:5: unknown ref 'ghost': no model, seed or external model has that name")
