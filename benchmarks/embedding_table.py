"""Throughput and memory of the collisionless embedding table vs a dict and the hashing trick.

    python benchmarks/embedding_table.py [--keys N] [--batch B] [--repeats R]

For each size in {min(1M, N), N} and dims 16 and 64, on the same id streams:
  * insert: ``lookup_or_insert`` of N fresh random int64 ids into an empty table, in batches
    (growth and rehashes included), and into a table pre-sized for N;
  * lookup: ``lookup`` (id -> row) and lookup + gather (id -> float32[dim]) of all N ids in
    random order (the cache-hostile case), and of a Zipf stream (the realistic, skewed case);
  * a Python dict id -> row on the same batches (``dict.update`` / ``map(d.__getitem__)``);
  * the hashing trick (row = hash(id) mod M) at equal memory: its lookup rate, and how many of
    a Zipf stream's distinct ids share a row with another id.
Rates are the best of ``--repeats`` runs (the machine is shared). The last line printed is one
JSON object with the headline numbers (size N, dim 16) and every measurement under "results".
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from typing import Any

import numpy as np

from tiktok_pipelines.embedding import (
    CollisionlessEmbeddingTable,
    HashingTrickEmbeddingTable,
    TableConfig,
)
from tiktok_pipelines.embedding.hashing import hash_ids_numpy
from tiktok_pipelines.embedding.hashing_trick import collision_stats

ZIPF_EXPONENT = 1.1


def _batches(ids: np.ndarray, batch: int) -> list[np.ndarray]:
    return [ids[i : i + batch] for i in range(0, ids.size, batch)]


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1)


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _prefault(n_bytes: int) -> float:
    """Touch and free n_bytes once. On this VM the hypervisor backs guest memory lazily and a
    first touch costs ~2 s/GB — a property of the sandbox, not of the table; without this, the
    first multi-GB table of a run measures the hypervisor."""
    t0 = time.perf_counter()
    block = np.ones(n_bytes // 8, dtype=np.float64)
    del block
    gc.collect()
    return time.perf_counter() - t0


def bench_table(ids: np.ndarray, queries: np.ndarray, zipf: np.ndarray, dim: int, batch: int,
                repeats: int) -> tuple[dict[str, Any], int]:
    n = ids.size
    cfg = TableConfig(dim=dim)
    out: dict[str, Any] = {}

    # Pre-sized insert first (then dropped), so both inserts see warm allocator pages.
    presized = CollisionlessEmbeddingTable(TableConfig(dim=dim, initial_capacity=n))
    presized.id_map.reserve(n)
    t0 = time.perf_counter()
    for b in _batches(ids, batch):
        presized.lookup_or_insert(b, now_s=0)
    out["insert_presized_keys_per_s"] = _rate(n, time.perf_counter() - t0)
    del presized
    gc.collect()

    table = CollisionlessEmbeddingTable(cfg)
    t0 = time.perf_counter()
    for b in _batches(ids, batch):
        table.lookup_or_insert(b, now_s=0)
    out["insert_keys_per_s"] = _rate(n, time.perf_counter() - t0)
    assert len(table) == np.unique(ids).size

    q_batches = _batches(queries, batch)
    out["lookup_keys_per_s"] = _rate(n, _best(lambda: [table.lookup(b) for b in q_batches], repeats))
    out["lookup_gather_keys_per_s"] = _rate(
        n, _best(lambda: [table.gather(table.lookup(b)) for b in q_batches], repeats))
    z_batches = _batches(zipf, batch)
    out["zipf_lookup_gather_keys_per_s"] = _rate(
        zipf.size, _best(lambda: [table.gather(table.lookup(b)) for b in z_batches], repeats))
    rows = table.lookup(queries[: min(n, 1 << 20)])
    grads = np.full((rows.size, dim), 1e-3, dtype=np.float32)
    out["adagrad_rows_per_s"] = _rate(rows.size, _best(lambda: table.apply_adagrad(rows, grads, now_s=1), repeats))
    memory = table.memory_bytes()
    out["bytes_per_key"] = round(memory / len(table), 2)
    out["raw_bytes_per_key"] = 2 * 4 * dim
    out["memory_over_raw"] = round(memory / (len(table) * 2 * 4 * dim), 3)
    out["map_load_factor"] = round(table.id_map.load_factor, 3)
    out["rehashes"] = table.id_map.rehash_count
    return out, memory  # the table is freed on return (the caller collects)


def bench_dict(ids: np.ndarray, queries: np.ndarray, batch: int) -> dict[str, Any]:
    n = ids.size
    d: dict[int, int] = {}
    t0 = time.perf_counter()
    next_row = 0
    for b in _batches(ids, batch):
        keys = b.tolist()
        d.update(zip(keys, range(next_row, next_row + len(keys))))
        next_row += len(keys)
    insert_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for b in _batches(queries, batch):
        np.fromiter(map(d.__getitem__, b.tolist()), dtype=np.int64, count=b.size)
    lookup_s = time.perf_counter() - t0
    del d
    gc.collect()
    return {"insert_keys_per_s": _rate(n, insert_s), "lookup_keys_per_s": _rate(n, lookup_s)}


def bench_hashing_trick(queries: np.ndarray, zipf: np.ndarray, zipf_table_bytes: int, batch: int,
                        repeats: int) -> dict[str, Any]:
    dim = 16
    num_rows = min(zipf_table_bytes // HashingTrickEmbeddingTable.raw_bytes_per_row(dim), 2**32 - 1)
    trick = HashingTrickEmbeddingTable(TableConfig(dim=dim, init_scale=0.0), num_rows=int(num_rows))
    q_batches = _batches(queries, batch)
    lookup_rate = _rate(queries.size, _best(lambda: [trick.lookup(b) for b in q_batches], repeats))
    gather_rate = _rate(queries.size, _best(lambda: [trick.gather(trick.lookup(b)) for b in q_batches], repeats))
    stats = collision_stats(zipf, int(num_rows))
    return {
        "lookup_keys_per_s": lookup_rate,
        "lookup_gather_keys_per_s": gather_rate,
        "num_rows_at_equal_memory": int(num_rows),
        "zipf_distinct_ids": stats["distinct_ids"],
        "collision_rate": round(stats["id_collision_rate"], 4),
        "occurrence_collision_rate": round(stats["occurrence_collision_rate"], 4),
    }


def run_size(n: int, dims: list[int], batch: int, repeats: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64)
    queries = ids[rng.permutation(n)]
    # Zipf ranks -> ids through a bijective hash: distinct ranks stay distinct ids.
    zipf = hash_ids_numpy(rng.zipf(ZIPF_EXPONENT, size=n).astype(np.int64), 12345).view(np.int64)
    result: dict[str, Any] = {}
    for dim in dims:
        result[f"dim{dim}"], _ = bench_table(ids, queries, zipf, dim, batch, repeats)
        gc.collect()
    result["dict"] = bench_dict(ids, queries, batch)

    # Equal-memory hashing trick for the Zipf stream: size the collisionless table that the
    # stream itself builds (training-style inserts with repeats), then give the trick its bytes.
    zipf_table = CollisionlessEmbeddingTable(TableConfig(dim=16))
    t0 = time.perf_counter()
    for b in _batches(zipf, batch):
        zipf_table.lookup_or_insert(b, now_s=0)
    result["dim16"]["zipf_insert_keys_per_s"] = _rate(zipf.size, time.perf_counter() - t0)
    zipf_bytes = zipf_table.memory_bytes()
    del zipf_table
    gc.collect()
    result["hashing_trick"] = bench_hashing_trick(queries, zipf, zipf_bytes, batch, repeats)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000_000, help="largest table size (default 10M)")
    parser.add_argument("--batch", type=int, default=1 << 17, help="ids per batched call (default 131072)")
    parser.add_argument("--repeats", type=int, default=3, help="lookup runs per measurement; best is kept")
    parser.add_argument("--dims", default="16,64")
    parser.add_argument("--no-prefault", action="store_true", help="skip touching memory up front")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    dims = [int(d) for d in args.dims.split(",")]
    sizes = sorted({min(1_000_000, args.keys), args.keys})

    # Compile / load every kernel before timing anything.
    warm = CollisionlessEmbeddingTable(TableConfig(dim=dims[0]))
    warm_ids = np.arange(10_000, dtype=np.int64)
    warm.gather(warm.lookup_or_insert(warm_ids, now_s=0))
    warm.apply_adagrad(np.arange(10), np.zeros((10, dims[0]), np.float32), now_s=0)
    del warm

    prefault_s = None
    if not args.no_prefault:
        prefault_s = round(_prefault(int(args.keys * 1.2 * (2 * 4 * max(dims) + 64))), 2)

    results: dict[str, Any] = {}
    for n in sizes:
        print(f"# {n:,} keys ...", file=sys.stderr, flush=True)
        results[str(n)] = run_size(n, dims, args.batch, args.repeats, args.seed)
        print(f"# {n:,} keys: {json.dumps(results[str(n)])}", flush=True)

    top = results[str(args.keys)]
    d16 = top["dim16"] if "dim16" in top else top[f"dim{dims[0]}"]
    summary = {
        "keys": args.keys,
        "lookup_keys_per_s": d16["lookup_keys_per_s"],
        "insert_keys_per_s": d16["insert_keys_per_s"],
        "dict_lookup_keys_per_s": top["dict"]["lookup_keys_per_s"],
        "bytes_per_key": d16["bytes_per_key"],
        "hashing_trick_collision_rate": top["hashing_trick"]["collision_rate"],
        "lookup_gather_dim16_keys_per_s": d16["lookup_gather_keys_per_s"],
        "insert_presized_keys_per_s": d16["insert_presized_keys_per_s"],
        "dict_insert_keys_per_s": top["dict"]["insert_keys_per_s"],
        "memory_over_raw": d16["memory_over_raw"],
        "hashing_trick_lookup_keys_per_s": top["hashing_trick"]["lookup_keys_per_s"],
        "hashing_trick_occurrence_collision_rate": top["hashing_trick"]["occurrence_collision_rate"],
        "results": results,
        "kernel": "numba",
        "batch": args.batch,
        "threads": int(os.environ.get("NUMBA_NUM_THREADS", os.cpu_count() or 1)),
        "prefault_s": prefault_s,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "command": "python benchmarks/embedding_table.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    for dim in dims:
        if dim != 16:
            summary[f"lookup_gather_dim{dim}_keys_per_s"] = top[f"dim{dim}"]["lookup_gather_keys_per_s"]
            summary[f"insert_dim{dim}_keys_per_s"] = top[f"dim{dim}"]["insert_keys_per_s"]
            summary[f"bytes_per_key_dim{dim}"] = top[f"dim{dim}"]["bytes_per_key"]
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
