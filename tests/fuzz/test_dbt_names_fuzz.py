"""Fuzz the SQL model loader: a name that is not a plain identifier is refused, always as a ModelError.

Names reach generated SQL (relations, quoted identifiers, asset keys), so ``load_project`` accepts
only ``[A-Za-z_][A-Za-z0-9_]*``. Arbitrary text is tried as a model's file stem, a seed's file stem,
a seed column, a header column, a ``ref()`` target and a ``source()`` name. The oracle is the rule
itself, written here independently: an identifier is accepted (or refused only as an unknown
name), anything else is refused with a :class:`ModelError` that names the file; no other exception
escapes, whatever the text holds (quotes, braces, newlines, YAML syntax, NUL, non-ASCII digits).
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tests.dbt_like.conftest import EXTERNAL, header, write
from tests.fuzz.conftest import fuzz_settings
from tiktok_pipelines.dbt_like import ModelError, load_project

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Text a file system takes as a name: no '/', no NUL, no lone surrogates, not too long, not hidden.
file_stems = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="/\x00"), min_size=1, max_size=40) \
    .filter(lambda s: not s.startswith(".") and len(s.encode()) <= 200) | st.from_regex(IDENT, fullmatch=True)
names = st.one_of(
    st.text(max_size=20),
    st.from_regex(IDENT, fullmatch=True).map(lambda s: s[:30]),
    st.sampled_from(["select", "from", "_", "a1", "1a", "a-b", "a b", "a.b", "é", "ａ", "a\n", "a\x00",
                     "'", '"', "}}", "{{", "a'b", "١", "a;DROP TABLE x", "stg_a", "STG_A", "raw", "quarantine"]),
)


def is_identifier(name: str) -> bool:
    return IDENT.fullmatch(name) is not None


def _load(files: dict[str, str]):
    """load_project on a fresh folder: the Project, or the ModelError it raised."""
    with tempfile.TemporaryDirectory(prefix="fuzz-dbt-") as tmp:
        root = Path(tmp) / "dbt_like_models"
        root.mkdir()
        write(root, files)
        try:
            return load_project(root, external=EXTERNAL)
        except ModelError as e:
            assert str(e).startswith("dbt_like_models/"), str(e)  # the file an author would fix
            return e


STG = {"staging/stg_a.sql": header() + "SELECT 1 AS a\n"}


def test_fuzz_model_and_seed_file_stems(tally):
    @fuzz_settings(150)
    @given(file_stems, st.sampled_from(["marts", "staging", "seeds"]))
    def prop(stem: str, where: str) -> None:
        rel = f"{where}/{stem}.csv" if where == "seeds" else f"{where}/{stem}.sql"
        files = {rel: "a,b\n1,2\n" if where == "seeds" else header() + "SELECT 1\n"}
        out = _load(files)
        if is_identifier(stem) and stem.lower() != "video_tags":  # video_tags: the external model's name
            assert not isinstance(out, ModelError), out
            assert stem in (out.seeds if where == "seeds" else out.models)
        else:
            assert isinstance(out, ModelError)
        tally.add("dbt_file_stems", inputs=1, refused=isinstance(out, ModelError))

    prop()


def test_fuzz_ref_and_source_targets(tally):
    @fuzz_settings(200)
    @given(names, st.sampled_from(["'", '"']), st.sampled_from(["ref", "source_schema", "source_table"]), st.booleans())
    def prop(target: str, quote: str, kind: str, use_known: bool) -> None:
        if use_known:  # half the time a name that resolves, so acceptance is exercised too
            target = {"ref": "stg_a", "source_schema": "raw", "source_table": "quarantine"}[kind]
        call = {"ref": f"ref({quote}{target}{quote})",
                "source_schema": f"source({quote}{target}{quote}, 'quarantine')",
                "source_table": f"source('raw', {quote}{target}{quote})"}[kind]
        out = _load({**STG, "marts/m.sql": header() + "SELECT *\nFROM {{ " + call + " }}\n"})
        known = {"ref": {"stg_a", "video_tags"}, "source_schema": {"raw"}, "source_table": {"quarantine"}}[kind]
        if target in known:
            assert not isinstance(out, ModelError), out
        else:
            assert isinstance(out, ModelError)
            if not is_identifier(target) and not set(target) & set("'\"{}%#") and target.strip() == target:
                assert "is not a plain SQL identifier" in str(out), str(out)
        tally.add("dbt_ref_source_targets", inputs=1, refused=isinstance(out, ModelError))

    prop()


def test_fuzz_column_names(tally):
    @fuzz_settings(150)
    @given(names, st.booleans())
    def prop(col: str, in_seed: bool) -> None:
        if in_seed:
            quoted = '"' + col.replace('"', '""') + '"'
            files = {"seeds/s.csv": f"a,{quoted}\n1,2\n"}
        else:
            # JSON strings are YAML flow scalars: any text reaches the header intact.
            extra = f"columns:\n  {json.dumps(col)}:\n    description: c\n"
            files = {"marts/m.sql": header(extra=extra) + "SELECT 1\n"}
        out = _load(files)
        if is_identifier(col) and col.lower() != "a":
            assert not isinstance(out, ModelError), out
            assert col in (out.seeds["s"].columns if in_seed else out.models["m"].columns)
        elif not is_identifier(col):
            assert isinstance(out, ModelError)
        tally.add("dbt_column_names", inputs=1, refused=isinstance(out, ModelError))

    prop()
