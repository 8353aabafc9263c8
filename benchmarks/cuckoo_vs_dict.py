"""The numba cuckoo id map against what a library or the standard library offers instead.

    OMP_NUM_THREADS=1 python benchmarks/cuckoo_vs_dict.py [--keys N] [--batch B] [--repeats R]

The embedding table's id -> row map (embedding/cuckoo.py) is hand-written; docs/handwritten.md
says why and quotes this script. Each candidate does the two things a training step asks of the
map, on the same streams of random int64 ids, in batches of ``--batch``:

  * insert: give each of N fresh ids the next free row, batch after batch, starting empty
    (growth included);
  * lookup: id -> row for all N ids in random order (-1 for an absent id), batch by batch.

Candidates: ``CuckooIdMap`` (numba, both cores, and pinned to one thread), a Python dict
(``dict.update`` / ``map(d.get)``), a sorted numpy array (insert = merge the batch in,
lookup = ``np.searchsorted`` + an equality check) and a polars hash join of the batch against
the (id, row) frame (insert = ``pl.concat``). Rates are ids per second, the best of
``--repeats`` runs, by wall clock and per CPU-second (every thread of the process counted;
the figure to compare on a shared machine); the last line printed is one JSON object with every
rate and the load average around the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable

import numba
import numpy as np
import polars as pl

from tiktok_pipelines.embedding.cuckoo import CuckooIdMap
from tiktok_pipelines.embedding.storage import RowStorage


def _best(run: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process, every thread) of the fastest of ``repeats`` runs.
    CPU time holds up when other work shares the cores, wall time does not; a multi-threaded
    candidate's CPU time counts each of its threads."""
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        run()
        best = min(best, (time.perf_counter() - t0, time.process_time() - c0))
    return best


class Cuckoo:
    """The embedding table's map, with a one-column RowStorage as its row allocator."""

    def __init__(self) -> None:
        self.map, self.rows = CuckooIdMap(), RowStorage(dim=1)

    def insert(self, ids: np.ndarray) -> None:
        self.map.assign(ids, np.ones(ids.size, dtype=np.bool_), self.rows)

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        return self.map.lookup(ids)


class Dict:
    def __init__(self) -> None:
        self.d: dict[int, int] = {}

    def insert(self, ids: np.ndarray) -> None:
        start = len(self.d)
        self.d.update(zip(ids.tolist(), range(start, start + ids.size)))

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        return np.fromiter(map(self.d.get, ids.tolist(), [-1] * ids.size), dtype=np.int64, count=ids.size)


class SortedArray:
    """Keys kept sorted with their rows alongside: O(n) per inserted batch (a merge)."""

    def __init__(self) -> None:
        self.keys, self.rows = np.empty(0, np.int64), np.empty(0, np.int64)

    def insert(self, ids: np.ndarray) -> None:
        rows = np.arange(self.keys.size, self.keys.size + ids.size, dtype=np.int64)
        keys, rows = np.concatenate((self.keys, ids)), np.concatenate((self.rows, rows))
        order = np.argsort(keys, kind="stable")  # timsort: two sorted runs, one merge
        self.keys, self.rows = keys[order], rows[order]

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        pos = np.minimum(np.searchsorted(self.keys, ids), self.keys.size - 1)
        return np.where(self.keys[pos] == ids, self.rows[pos], -1)


class PolarsJoin:
    """The map as a frame (id, row); a lookup is a left hash join that keeps the batch's order."""

    def __init__(self) -> None:
        self.frame = pl.DataFrame(schema={"id": pl.Int64, "row": pl.Int64})

    def insert(self, ids: np.ndarray) -> None:
        rows = np.arange(self.frame.height, self.frame.height + ids.size, dtype=np.int64)
        self.frame = pl.concat([self.frame, pl.DataFrame({"id": ids, "row": rows})], rechunk=False)

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        joined = pl.DataFrame({"id": ids}).join(self.frame, on="id", how="left", maintain_order="left")
        return joined["row"].fill_null(-1).to_numpy()


def measure(make: Callable[[], object], batches: list[np.ndarray], shuffled: list[np.ndarray],
            expected: list[np.ndarray], repeats: int) -> dict[str, float]:
    n = sum(b.size for b in batches)
    built: list = []

    def insert() -> None:
        m = make()
        for b in batches:
            m.insert(b)
        built[:] = [m]

    insert_wall, insert_cpu = _best(insert, repeats)
    m = built[0]
    for b, want in zip(shuffled, expected):  # every candidate answers the same rows
        assert np.array_equal(m.lookup(b), want)
    lookup_wall, lookup_cpu = _best(lambda: [m.lookup(b) for b in shuffled], repeats)
    absent = np.arange(-1000, 0, dtype=np.int64) * 7919  # negative: never one of the ids drawn
    assert (m.lookup(absent) == -1).all()
    return {"insert_ids_per_s": round(n / insert_wall), "lookup_ids_per_s": round(n / lookup_wall),
            "insert_ids_per_cpu_s": round(n / insert_cpu), "lookup_ids_per_cpu_s": round(n / lookup_cpu)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=65_536)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    load_before = round(os.getloadavg()[0], 2)
    rng = np.random.default_rng(0)
    ids = np.unique(rng.integers(1, 2**63 - 1, int(args.keys * 1.01), dtype=np.int64))
    ids = rng.permutation(ids)[: args.keys]  # distinct, positive, in random order
    rows = np.arange(ids.size, dtype=np.int64)  # row i <- the i-th id inserted
    look = rng.permutation(ids.size)
    cut = range(0, ids.size, args.batch)
    batches = [ids[i : i + args.batch] for i in cut]
    shuffled = [ids[look[i : i + args.batch]] for i in cut]
    expected = [rows[look[i : i + args.batch]] for i in cut]

    warm = Cuckoo()  # compile (or load from numba's cache) the kernels outside the timings
    warm.insert(ids[:10_000])
    warm.lookup(ids[:10_000])

    threads = numba.get_num_threads()
    results = {f"cuckoo_numba_{threads}_threads": measure(Cuckoo, batches, shuffled, expected, args.repeats)}
    numba.set_num_threads(1)
    results["cuckoo_numba_1_thread"] = measure(Cuckoo, batches, shuffled, expected, args.repeats)
    numba.set_num_threads(threads)
    for name, make in (("python_dict", Dict), ("numpy_sorted_searchsorted", SortedArray),
                       ("polars_hash_join", PolarsJoin)):
        results[name] = measure(make, batches, shuffled, expected, args.repeats)

    print(f"{'M ids/s (per CPU-second)':>28}  {'insert':>17}  {'lookup':>17}")
    for name, r in results.items():
        print(f"{name:>28}  {r['insert_ids_per_s'] / 1e6:7.2f} ({r['insert_ids_per_cpu_s'] / 1e6:7.2f})"
              f"  {r['lookup_ids_per_s'] / 1e6:7.2f} ({r['lookup_ids_per_cpu_s'] / 1e6:7.2f})")
    print(json.dumps({"keys": int(ids.size), "batch": args.batch, "cpus": os.cpu_count(),
                      "load_average_1min": [load_before, round(os.getloadavg()[0], 2)],
                      "machine": platform.processor() or platform.machine(),
                      "numba": numba.__version__, "numpy": np.__version__, "polars": pl.__version__,
                      "results": results}))


if __name__ == "__main__":
    main()
