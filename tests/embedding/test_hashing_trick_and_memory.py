"""The hashing-trick baseline, memory bounds, and the numba cache fallback."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tiktok_pipelines.embedding import (
    CollisionlessEmbeddingTable,
    HashingTrickEmbeddingTable,
    TableConfig,
    collision_stats,
)


def test_hashing_trick_collides_at_the_birthday_rate() -> None:
    """n distinct ids in M rows: a given id shares its row with probability 1 - (1 - 1/M)^(n-1)."""
    n, m = 20000, 50000
    stats = collision_stats(np.random.default_rng(0).integers(-(2**62), 2**62, size=n), m)
    expected = 1 - (1 - 1 / m) ** (n - 1)
    assert stats["distinct_ids"] == n
    assert abs(stats["id_collision_rate"] - expected) < 0.02, (stats, expected)


def test_collisionless_table_never_collides_where_hashing_trick_does() -> None:
    ids = np.arange(5000, dtype=np.int64)
    trick = HashingTrickEmbeddingTable(TableConfig(dim=2), num_rows=5000)
    table = CollisionlessEmbeddingTable(TableConfig(dim=2))
    trick_rows = trick.lookup_or_insert(ids, now_s=0)
    rows = table.lookup_or_insert(ids, now_s=0)
    assert np.unique(trick_rows).size < ids.size
    assert np.unique(rows).size == ids.size


def test_hashing_trick_same_api() -> None:
    trick = HashingTrickEmbeddingTable(TableConfig(dim=3, init_scale=0.5), num_rows=7)
    rows = trick.lookup(np.array([1, 2, 3, 1]))
    assert rows[0] == rows[3] and np.all((rows >= 0) & (rows < 7))
    np.testing.assert_array_equal(trick.embeddings_for([1]), trick.gather(rows[:1]))
    assert trick.delete([1]).size == 0 and trick.expire(now_s=10**9).size == 0
    assert len(trick) == 7


@pytest.mark.parametrize("dim", [16, 64])
def test_memory_within_1_5x_of_raw_bytes(dim: int) -> None:
    """Table bytes (map + rows + optimizer + bookkeeping) <= 1.5 x (embedding + Adagrad bytes).
    1M rows here; benchmarks/embedding_table.py reports the 10M figure."""
    n = 1_000_000
    ids = np.random.default_rng(0).integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64)
    table = CollisionlessEmbeddingTable(TableConfig(dim=dim, init_scale=0.0))
    for chunk in np.array_split(ids, 8):
        table.lookup_or_insert(chunk, now_s=0)
    raw = len(table) * 2 * 4 * dim
    assert table.memory_bytes() <= 1.5 * raw, table.memory_bytes() / raw


@pytest.mark.slow
def test_memory_within_1_5x_at_10m_rows() -> None:
    n = 10_000_000
    ids = np.random.default_rng(0).integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64)
    table = CollisionlessEmbeddingTable(TableConfig(dim=16, init_scale=0.0))
    for chunk in np.array_split(ids, 40):
        table.lookup_or_insert(chunk, now_s=0)
    assert table.memory_bytes() <= 1.5 * len(table) * 2 * 4 * 16


def test_njit_falls_back_when_no_cache_dir_is_usable() -> None:
    """A function whose source file cannot host a cache (here: code from a string, as in a
    read-only or zipped install) still compiles and runs, with a warning, instead of raising."""
    code = textwrap.dedent(
        """
        import warnings
        from tiktok_pipelines.embedding._jit import njit
        ns = {}
        exec(compile("def double(x):\\n    return 2 * x\\n", "<not-a-file>", "exec"), ns)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            double = njit(ns["double"])
        assert double(21) == 42
        assert any("numba cache unavailable" in str(w.message) for w in caught)
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_kernels_run_with_read_only_cache_dir(tmp_path) -> None:
    """NUMBA_CACHE_DIR pointing at an unwritable place must not break import or use."""
    code = "import numpy as np; from tiktok_pipelines.embedding import CollisionlessEmbeddingTable, TableConfig;" \
           "t = CollisionlessEmbeddingTable(TableConfig(dim=2)); print(int(t.lookup_or_insert(np.arange(3), 0).max()))"
    env = {"NUMBA_CACHE_DIR": "/proc/no-such-dir", "PATH": "/usr/bin:/bin", "HOME": "/proc"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2"
