"""The simulator's output is pinned: digests computed from the code *before* issue 18's split of
``simulate``/``gen_feed``/``build_world`` (commit aca3b75), so a refactor that changes a single
byte fails here (two runs of the refactored code agreeing, as test_world checks, would not catch it).

Bytes depend on the libraries that write them (parquet's ``created_by``, polars' float formatting,
numpy's generators), so the exact digests are asserted only with the versions they were computed
with; the canonical summary (line/row counts and sums of every numeric field) is asserted always.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow
import pytest

from tests.simulator.conftest import KUAIREC_DIR
from tiktok_pipelines.simulator import simulate

PINNED_VERSIONS = {"numpy": "2.4.6", "polars": "2.1.0", "pyarrow": "26.0.1"}

BASE = {"seed": 11, "users": 300, "videos": 600, "events_per_day": 6_000, "kuairec_dir": None,
        "start_date": "2026-11-01"}


def _recommender(user_ids: np.ndarray, day: int) -> np.ndarray:
    # deterministic, and different per day, so the served slots depend on both arguments
    return (user_ids[:, None] * 7 + np.arange(20)[None, :] + day) % 600 + 1


def _run(name: str, out: Path) -> None:
    """One scenario; between them they reach every branch of simulate/gen_feed/build_world."""
    if name == "generated":  # two days, dirty enough that every kind shows, then one more day
        simulate(out, **BASE, days=2, dirty_rate=0.05, late_rate=0.02)
        simulate(out, **BASE, days=1, first_day=2, dirty_rate=0.05, late_rate=0.02)  # lookback, seq numbers
    elif name == "hourly_later_start":  # other batch size, a later first day with no previous run
        simulate(out, **{**BASE, "seed": 3}, days=1, first_day=4, batch_minutes=60,
                 dirty_weights={"malformed_json": 1.0, "wrong_type": 2.0, "conflicting_duplicate": 1.0})
    elif name == "recommender":  # the closed loop's served personal slots, no truth
        simulate(out, **BASE, days=2, recommender=_recommender, write_truth=False, dirty_rate=0.0,
                 late_rate=0.0)
    elif name == "kuairec":  # the real catalog's captions and categories
        simulate(out, **{**BASE, "videos": 9_000, "kuairec_dir": KUAIREC_DIR, "events_per_day": 3_000}, days=1)
    else:
        raise KeyError(name)


def digests(root: Path) -> dict[str, str]:
    """sha256 per group (catalog/truth file, or a landing stream's files in path order), and "*"
    over all of them."""
    groups: dict[str, hashlib._Hash] = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(root).as_posix()
        key = "/".join(rel.split("/")[:2]) if rel.startswith("landing/") else rel
        h = groups.setdefault(key, hashlib.sha256())
        h.update(rel.encode() + b"\0" + p.read_bytes() + b"\0")
    out = {k: h.hexdigest() for k, h in sorted(groups.items())}
    out["*"] = hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()
    return out


def _sums(df: pl.DataFrame) -> dict:
    out = {"rows": df.height}
    for name, dtype in df.schema.items():
        if dtype.is_integer() or dtype == pl.Boolean:
            out[name] = int(df.get_column(name).cast(pl.Int64).sum())
        elif dtype.is_float():
            out[name] = round(float(df.get_column(name).sum()), 3)
    return out


def canonical(root: Path) -> dict:
    """Counts and sums that survive a change of writer: per landing stream the files, lines and
    the sums of the numeric fields of the lines that parse; per parquet file its rows and sums."""
    out: dict = {}
    for d in sorted((root / "landing").iterdir()) if (root / "landing").is_dir() else []:
        files = sorted(d.rglob("*.ndjson"))
        rows, lines = [], 0
        for f in files:
            for raw in f.read_bytes().splitlines():
                lines += 1
                try:
                    obj = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(obj, dict):
                    rows.append({k: v for k, v in obj.items()
                                 if isinstance(v, (int, float)) and not isinstance(v, bool)})
        sums: dict = {}
        for r in rows:
            for k, v in r.items():
                sums[k] = sums.get(k, 0) + v
        out[f"landing/{d.name}"] = {"files": len(files), "lines": lines,
                                    **{k: round(v, 3) for k, v in sorted(sums.items())}}
    for p in sorted(root.rglob("*.parquet")):
        out[p.relative_to(root).as_posix()] = _sums(pl.read_parquet(p))
    return out


SCENARIOS = ("generated", "hourly_later_start", "recommender", "kuairec")
PINNED = Path(__file__).with_name("pinned_output.json")  # {scenario: {"digests": ..., "canonical": ...}}


def _versions() -> dict[str, str]:
    return {"numpy": np.__version__, "polars": pl.__version__, "pyarrow": pyarrow.__version__}


@pytest.mark.parametrize("name", SCENARIOS)
def test_output_matches_the_pinned_output(tmp_path, name):
    if name == "kuairec" and not (KUAIREC_DIR / "video_captions.csv").exists():
        pytest.skip("KuaiRec data not present")
    expected = json.loads(PINNED.read_text())[name]
    _run(name, tmp_path)
    assert canonical(tmp_path) == expected["canonical"]
    if _versions() != PINNED_VERSIONS:
        pytest.skip(f"bytes pinned with {PINNED_VERSIONS}, running {_versions()}: counts and sums only")
    got = digests(tmp_path)
    assert {k: v for k, v in got.items() if v != expected["digests"].get(k)} == {}
    assert got == expected["digests"]
