"""64-bit id hashing shared by the cuckoo map, the admission sketch and the hashing-trick baseline.

Feature ids are arbitrary int64 values (often already hashes, sometimes small sequential
integers), so every consumer first runs them through splitmix64's finaliser: a bijection on
64 bits with full avalanche, i.e. no two ids ever share a hash and sequential ids spread evenly.
Ranges are reduced with Lemire's multiply-shift ("fastrange") instead of ``% n``: no division,
and ``n`` need not be a power of two, which lets tables grow by factors other than 2.
"""

from __future__ import annotations

import numpy as np

from tiktok_pipelines.embedding._jit import njit

_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_LO32 = np.uint64(0xFFFFFFFF)


@njit(inline="always")
def mix64(x: np.uint64) -> np.uint64:
    """splitmix64 finaliser (a bijection on uint64)."""
    x = (x ^ (x >> _S30)) * _C1
    x = (x ^ (x >> _S27)) * _C2
    return x ^ (x >> _S31)


@njit(inline="always")
def hash_id(key: np.int64, seed: np.uint64) -> np.uint64:
    # XOR with the seed before mixing keeps the map a bijection for every seed, so re-seeding
    # after a failed cuckoo rehash can never merge two ids.
    return mix64(np.uint64(key) ^ seed)


@njit(inline="always")
def fastrange_hi(h: np.uint64, n: np.uint64) -> np.int64:
    """Map the high 32 bits of ``h`` uniformly onto [0, n); n < 2**32."""
    return np.int64(((h >> _S32) * n) >> _S32)


@njit(inline="always")
def fastrange_lo(h: np.uint64, n: np.uint64) -> np.int64:
    """Map the low 32 bits of ``h`` uniformly onto [0, n); n < 2**32."""
    return np.int64(((h & _LO32) * n) >> _S32)


def hash_ids_numpy(ids: np.ndarray, seed: int) -> np.ndarray:
    """Vectorised ``hash_id`` for numpy callers: uint64[n] from int64[n]. Same values as the kernel."""
    with np.errstate(over="ignore"):
        x = np.ascontiguousarray(ids, dtype=np.int64).view(np.uint64) ^ np.uint64(seed)
        x = (x ^ (x >> _S30)) * _C1
        x = (x ^ (x >> _S27)) * _C2
        return x ^ (x >> _S31)


def bucket_of_numpy(ids: np.ndarray, num_buckets: int, seed: int) -> np.ndarray:
    """int64[n] bucket in [0, num_buckets) per id: multiply-shift of a 64-bit hash (no modulo bias
    beyond 2**-32 for num_buckets < 2**32)."""
    if not 0 < num_buckets < 2**32:
        raise ValueError(f"num_buckets must be in (0, 2**32), got {num_buckets}")
    h = hash_ids_numpy(ids, seed)
    with np.errstate(over="ignore"):
        return (((h >> _S32) * np.uint64(num_buckets)) >> _S32).astype(np.int64)
