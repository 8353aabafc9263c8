"""benchmarks/cuckoo_vs_dict.py (quoted in docs/handwritten.md) runs, small, and every candidate
map answers the same rows (the script asserts it: a wrong candidate exits non-zero)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "cuckoo_vs_dict.py"


def test_the_id_map_benchmark_runs_and_reports_every_candidate() -> None:
    out = subprocess.run([sys.executable, str(BENCH), "--keys", "20000", "--batch", "4096", "--repeats", "1"],
                         capture_output=True, text=True, timeout=300, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["keys"] == 20000
    names = set(report["results"])
    assert {"cuckoo_numba_1_thread", "python_dict", "numpy_sorted_searchsorted", "polars_hash_join"} <= names
    for rates in report["results"].values():
        assert min(rates.values()) > 0
