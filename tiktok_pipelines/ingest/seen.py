"""The event ids a batch has put in the lake so far (per stream), for judging duplicates across
its chunks, and the ids that repeat within one chunk.

Why here and not in DuckDB: nearly every id of a batch is new, and judging in SQL cost ~15% of
the ingest's CPU — hashing and grouping every id of every chunk to find the rare repeats, and a
scan of a ``seen`` table that grows with the batch. These compiled passes find the *candidates*
(an id that repeats in the chunk, or one this batch already put in the lake) with one hash probe
per id; only the candidates go to SQL (engine.py ``_judge_duplicates``), which ranks them exactly
as before. Membership here is exact: a probe compares the id's bytes, not only its hash.

Ids are Arrow large strings (offsets and bytes). The table is open addressing with linear
probing over (hash, entry) slots; entries keep each id's bytes in one arena and its payload hash.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tiktok_pipelines.embedding._jit import load_u64, njit, prefetch
from tiktok_pipelines.embedding.hashing import mix64

_SEED = np.uint64(0x9E3779B97F4A7C15)


@njit(inline="always")
def _hash_bytes(data, a, n):
    """A 64-bit hash of data[a:a+n], never 0 (0 marks an empty slot of the chunk's table)."""
    h = _SEED ^ np.uint64(n)
    p = a
    end = a + n
    while p + 8 <= end:
        h = mix64(h ^ load_u64(data, p))
        p += 8
    if p < end:
        w = np.uint64(0)
        s = np.uint64(0)
        while p < end:
            w |= np.uint64(data[p]) << s
            s += np.uint64(8)
            p += 1
        h = mix64(h ^ w ^ np.uint64(0xFF))
    return h if h != 0 else np.uint64(1)


@njit(nogil=True)
def _hash_all(offsets, data):
    n = len(offsets) - 1
    out = np.empty(n, np.uint64)
    for i in range(n):
        out[i] = _hash_bytes(data, offsets[i], offsets[i + 1] - offsets[i])
    return out


@njit(nogil=True)
def _repeated(hashes):
    """Per id, whether its hash occurs more than once among ``hashes``."""
    n = len(hashes)
    cap = 16
    while cap < 2 * n:
        cap *= 2
    mask = np.uint64(cap - 1)
    keys = np.zeros(cap, np.uint64)
    counts = np.zeros(cap, np.int32)
    slot_of = np.empty(n, np.int64)
    for i in range(n):
        h = hashes[i]
        s = np.int64(h & mask)
        while keys[s] != 0 and keys[s] != h:
            s = (s + 1) & (cap - 1)
        keys[s] = h
        counts[s] += 1
        slot_of[i] = s
    out = np.empty(n, np.bool_)
    for i in range(n):
        out[i] = counts[slot_of[i]] > 1
    return out


@njit(inline="always")
def _same(data, a, n, arena, b, m):
    if n != m:
        return False
    for i in range(n):
        if data[a + i] != arena[b + i]:
            return False
    return True


# A slot is one uint64: the hash's high 32 bits (a tag) and entry + 1 (0: empty), so a probe
# costs one cache line and a miss compares no bytes. The low bits of the hash pick the slot.
_LOW32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_AHEAD = 16  # probes prefetched ahead: a probe is a cache miss, bound by memory latency


@njit(inline="always")
def _slot_of(h, cap):
    return np.int64(h & np.uint64(cap - 1))


@njit(nogil=True)
def _lookup(offsets, data, hashes, slots, e_off, arena):
    """Per id, the entry holding the same bytes, or -1."""
    n = len(hashes)
    cap = len(slots)
    out = np.full(n, -1, np.int64)
    for i in range(n):
        if i + _AHEAD < n:
            prefetch(slots, _slot_of(hashes[i + _AHEAD], cap))
        h = hashes[i]
        tag = h >> _S32
        s = _slot_of(h, cap)
        a = offsets[i]
        ln = offsets[i + 1] - a
        while slots[s] != 0:
            if slots[s] >> _S32 == tag:
                e = np.int64(slots[s] & _LOW32) - 1
                if _same(data, a, ln, arena, e_off[e], e_off[e + 1] - e_off[e]):
                    out[i] = e
                    break
            s = (s + 1) & (cap - 1)
    return out


@njit(inline="always")
def _place(slots, h, e):
    cap = len(slots)
    s = _slot_of(h, cap)
    while slots[s] != 0:
        s = (s + 1) & (cap - 1)
    slots[s] = ((h >> _S32) << _S32) | np.uint64(e + 1)


@njit(nogil=True)
def _insert(offsets, data, hashes, payload, take, slots, e_hash, e_ph, e_off, arena, count):
    """Add the ids ``take`` selects as entries count, count + 1, ...; returns the new count."""
    cap = len(slots)
    n = len(hashes)
    used = e_off[count]
    for i in range(n):
        if i + _AHEAD < n:
            prefetch(slots, _slot_of(hashes[i + _AHEAD], cap))
        if not take[i]:
            continue
        a = offsets[i]
        ln = offsets[i + 1] - a
        for j in range(ln):
            arena[used + j] = data[a + j]
        used += ln
        h = hashes[i]
        e_hash[count] = h
        e_ph[count] = payload[i]
        e_off[count + 1] = used
        _place(slots, h, count)
        count += 1
    return count


@njit(nogil=True)
def _rehash(e_hash, count, slots):
    for e in range(count):
        _place(slots, e_hash[e], e)


def id_arrays(arrays: list[pa.Array]) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """The ids of ``arrays`` (any Arrow string types, no NULLs) as one large string array, with
    its offsets (int64, from 0) and bytes for the kernels."""
    ids = (pa.concat_arrays([a.cast(pa.large_string()) for a in arrays]) if arrays
           else pa.array([], pa.large_string()))
    if ids.null_count:
        raise ValueError("an event id is NULL")
    _, off_buf, data_buf = ids.buffers()
    offsets = np.frombuffer(off_buf, np.int64)[ids.offset:ids.offset + len(ids) + 1]
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None and data_buf.size else np.zeros(8, np.uint8)
    base = int(offsets[0])
    offsets = offsets - base  # a copy, from 0
    data = data[base:]
    data.flags.writeable = False  # one kernel signature, whoever owns the buffer
    return ids, offsets, data


def hash_ids(offsets: np.ndarray, data: np.ndarray) -> np.ndarray:
    return _hash_all(offsets, data)


def repeated(hashes: np.ndarray) -> np.ndarray:
    """Per id, whether its hash occurs more than once in the array (a superset of the ids that
    do: two ids may share a hash)."""
    return _repeated(hashes)


def _grown(a: np.ndarray, size: int, keep: int) -> np.ndarray:
    """``a`` in a new array of ``size`` elements, its first ``keep`` copied (the rest unset)."""
    out = np.empty(size, a.dtype)
    out[:keep] = a[:keep]
    return out


class SeenIds:
    """The ids put in the lake so far, each with its payload hash; exact membership."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.slots = np.zeros(1 << 10, np.uint64)
        self.e_hash = np.zeros(1 << 9, np.uint64)
        self.e_ph = np.zeros(1 << 9, np.int64)
        self.e_off = np.zeros((1 << 9) + 1, np.int64)
        self.arena = np.zeros(1 << 14, np.uint8)

    def lookup(self, offsets: np.ndarray, data: np.ndarray, hashes: np.ndarray) -> np.ndarray:
        """Per id, its entry (an index for ``payload_hashes``), or -1 when it was not added."""
        if self.count == 0:
            return np.full(len(hashes), -1, np.int64)
        return _lookup(offsets, data, hashes, self.slots, self.e_off, self.arena)

    def payload_hashes(self, entries: np.ndarray) -> np.ndarray:
        return self.e_ph[entries]

    def add(self, offsets: np.ndarray, data: np.ndarray, hashes: np.ndarray, payload: np.ndarray,
            take: np.ndarray) -> None:
        """Add the ids ``take`` selects (ids not added before) with their payload hashes."""
        k = int(np.count_nonzero(take))
        if k == 0:
            return
        need = self.count + k
        if need > len(self.e_hash):
            size = max(need, 2 * len(self.e_hash))
            self.e_hash = _grown(self.e_hash, size, self.count)
            self.e_ph = _grown(self.e_ph, size, self.count)
            self.e_off = _grown(self.e_off, size + 1, self.count + 1)
        used = int(self.e_off[self.count])
        nbytes = int(np.diff(offsets)[take].sum())
        if used + nbytes > len(self.arena):
            self.arena = _grown(self.arena, max(used + nbytes, 2 * len(self.arena)), used)
        if 4 * need > 3 * len(self.slots):  # at most 3/4 full: short probe runs
            cap = len(self.slots)
            while 4 * need > 3 * cap:
                cap *= 2
            self.slots = np.zeros(cap, np.uint64)
            _rehash(self.e_hash, self.count, self.slots)
        self.count = _insert(offsets, data, hashes, payload.astype(np.int64, copy=False),
                             take.astype(np.bool_, copy=False), self.slots, self.e_hash, self.e_ph, self.e_off,
                             self.arena, self.count)
