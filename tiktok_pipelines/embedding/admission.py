"""Admission filters: which unseen ids earn a row (Monolith §3.2.2).

Most ids in a recommendation stream are seen once or twice and never learn anything useful; a
row for each would cost memory and pollute the model. A filter decides, per occurrence of an id
that has no row yet, whether to create one. Until then the id reads the default (zero) vector.

``admit(ids)`` takes the ids of a batch that have no row (repeats included) and returns a bool
mask; the table admits an id for the whole batch if any of its occurrences is admitted.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from tiktok_pipelines.embedding._jit import njit
from tiktok_pipelines.embedding.hashing import fastrange_hi, hash_id

_COUNTER_MAX = np.uint16(0xFFFF)
_COUNTERS_PER_BLOCK = 32  # uint16 counters: one 64-byte cache line per block
_PROBES = 4


class AdmissionFilter(Protocol):
    def admit(self, ids: np.ndarray) -> np.ndarray:
        """bool[n] for ids int64[n] (ids that have no row yet; repeats allowed)."""
        ...

    def config(self) -> dict[str, Any]:
        """JSON-able description, written into export manifests."""
        ...


class AdmitAll:
    """No filter: every id gets a row at its first occurrence."""

    def admit(self, ids: np.ndarray) -> np.ndarray:
        return np.ones(ids.shape[0], dtype=np.bool_)

    def config(self) -> dict[str, Any]:
        return {"kind": "all"}


@njit(inline="always")
def _probe_positions(h):
    # 4 counters inside one block, from 4 x 5 bits of the hash's low half (the block index uses
    # the high half), so an update costs one cache miss instead of four.
    p0 = np.int64(h & np.uint64(31))
    p1 = np.int64((h >> np.uint64(5)) & np.uint64(31))
    p2 = np.int64((h >> np.uint64(10)) & np.uint64(31))
    p3 = np.int64((h >> np.uint64(15)) & np.uint64(31))
    return p0, p1, p2, p3


@njit(inline="always")
def _min4(counters, b, p0, p1, p2, p3):
    """The count-min estimate: the smallest of an id's four counters."""
    return min(min(counters[b, p0], counters[b, p1]), min(counters[b, p2], counters[b, p3]))


@njit
def _count_and_estimate(counters, seed, ids, out_counts):
    """Conservative-update count-min: add 1 per occurrence, then read every id's estimate."""
    num_blocks = np.uint64(counters.shape[0])
    for i in range(ids.shape[0]):
        h = hash_id(ids[i], seed)
        b = fastrange_hi(h, num_blocks)
        p0, p1, p2, p3 = _probe_positions(h)
        est = _min4(counters, b, p0, p1, p2, p3)
        if est < _COUNTER_MAX:
            new = est + np.uint16(1)
            # Conservative update: raise only the counters below the new estimate. Never
            # under-counts, and over-counts far less than incrementing all four.
            counters[b, p0] = max(counters[b, p0], new)
            counters[b, p1] = max(counters[b, p1], new)
            counters[b, p2] = max(counters[b, p2], new)
            counters[b, p3] = max(counters[b, p3], new)
    _estimate(counters, seed, ids, out_counts)


@njit
def _estimate(counters, seed, ids, out_counts):
    num_blocks = np.uint64(counters.shape[0])
    for i in range(ids.shape[0]):
        h = hash_id(ids[i], seed)
        b = fastrange_hi(h, num_blocks)
        p0, p1, p2, p3 = _probe_positions(h)
        out_counts[i] = _min4(counters, b, p0, p1, p2, p3)


class CountFilter:
    """Admit an id once it has been seen ``min_count`` times (Monolith's count-based filter).

    Counts of not-yet-admitted ids live in a blocked count-min sketch of fixed size, not in a
    map: the long tail of one-off ids is exactly what we refuse to spend per-id memory on. The
    sketch never under-counts, so an id is never admitted later than its ``min_count``-th
    sighting; it can over-count (admit a little early) when the sketch is small relative to the
    number of distinct pending ids — size ``num_counters`` at ~4x that number for <1% early
    admissions. Memory: 2 bytes per counter.
    """

    def __init__(self, min_count: int, *, num_counters: int = 1 << 22, seed: int = 0xC0FFEE) -> None:
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        self.min_count = int(min_count)
        self.seed = int(seed)
        num_blocks = max(1, math.ceil(num_counters / _COUNTERS_PER_BLOCK))
        self.counters = np.zeros((num_blocks, _COUNTERS_PER_BLOCK), dtype=np.uint16)

    def estimate_counts(self, ids: np.ndarray) -> np.ndarray:
        """uint16[n] counts so far (never below the truth), without recording a sighting."""
        out = np.empty(ids.shape[0], dtype=np.uint16)
        _estimate(self.counters, np.uint64(self.seed), np.ascontiguousarray(ids, dtype=np.int64), out)
        return out

    def admit(self, ids: np.ndarray) -> np.ndarray:
        counts = np.empty(ids.shape[0], dtype=np.uint16)
        _count_and_estimate(self.counters, np.uint64(self.seed), np.ascontiguousarray(ids, dtype=np.int64), counts)
        return counts >= self.min_count

    def config(self) -> dict[str, Any]:
        return {"kind": "count", "min_count": self.min_count, "num_counters": int(self.counters.size)}


def probability_for_expected_count(expected_count: float) -> float:
    """Monolith's q = 1 - 0.05 ** (1 / T): an id seen T times has been admitted with 95% odds."""
    if expected_count <= 0:
        raise ValueError(f"expected_count must be > 0, got {expected_count}")
    return 1.0 - 0.05 ** (1.0 / expected_count)


class ProbabilisticFilter:
    """Admit each occurrence independently with probability ``q`` (Monolith's probabilistic
    filter), so an id seen ``c`` times holds a row with probability 1 - (1 - q) ** c. Stateless
    apart from its random generator, hence free in memory, at the price of admitting some
    one-off ids and delaying some frequent ones.
    """

    def __init__(self, q: float | None = None, *, expected_count: float | None = None, seed: int = 0) -> None:
        if (q is None) == (expected_count is None):
            raise ValueError("give exactly one of q or expected_count")
        self.q = float(q) if q is not None else probability_for_expected_count(expected_count)
        if not 0.0 < self.q <= 1.0:
            raise ValueError(f"q must be in (0, 1], got {self.q}")
        self.expected_count = expected_count
        self._rng = np.random.default_rng(seed)

    def admit(self, ids: np.ndarray) -> np.ndarray:
        return self._rng.random(ids.shape[0]) < self.q

    def config(self) -> dict[str, Any]:
        return {"kind": "probabilistic", "q": self.q, "expected_count": self.expected_count}


# --- state: a filter's counts travel with the table (checkpoints, serving versions) ------------

def filter_state(f: AdmissionFilter) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(config, arrays) that rebuild ``f`` exactly, counts and random state included: an online
    update that restarts from a checkpoint or a serving version must not forget which ids it
    has already seen (a reset filter would make every tail id wait ``min_count`` sightings
    again after each restart)."""
    if isinstance(f, CountFilter):
        return {**f.config(), "seed": f.seed}, {"counters": f.counters}
    if isinstance(f, ProbabilisticFilter):
        return {**f.config(), "rng": f._rng.bit_generator.state}, {}
    if isinstance(f, AdmitAll):
        return f.config(), {}
    raise TypeError(f"no state format for admission filter {type(f).__name__}")


def filter_from_state(config: dict[str, Any], arrays: dict[str, np.ndarray]) -> AdmissionFilter:
    kind = config["kind"]
    if kind == "count":
        counters = np.asarray(arrays["counters"], dtype=np.uint16)
        f = CountFilter(config["min_count"], num_counters=int(counters.size), seed=int(config["seed"]))
        if f.counters.shape != counters.shape:
            raise ValueError(f"count filter state of shape {counters.shape}, expected {f.counters.shape}")
        f.counters = counters.copy()
        return f
    if kind == "probabilistic":
        f = ProbabilisticFilter(config["q"])
        f.expected_count = config.get("expected_count")
        f._rng.bit_generator.state = config["rng"]
        return f
    if kind == "all":
        return AdmitAll()
    raise ValueError(f"unknown admission filter kind {kind!r}")


def is_stateful(f: AdmissionFilter | None) -> bool:
    return f is not None and not isinstance(f, AdmitAll)
