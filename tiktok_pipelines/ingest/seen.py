"""The event ids a batch has met so far (per stream), for judging duplicates within and across
its chunks.

Why here and not in DuckDB: nearly every id of a batch is new, and judging in SQL cost ~15% of
the ingest's CPU — hashing and grouping every id of every chunk to find the rare repeats, and a
scan of a ``seen`` table that grows with the batch. One compiled pass per chunk (``SeenIds.meet``)
probes each id once and adds the new ones, and so finds the *candidates*: the ids met before, in
this chunk or an earlier one. Only they go to SQL (engine.py ``_judge_duplicates``), which ranks
them as before; ``SeenIds.settle`` then records which copy went to the lake. Membership is exact:
a probe compares the id's bytes, not only its hash.

Ids are Arrow large strings (offsets and bytes). The table is open addressing with linear
probing; an entry keeps its id's bytes (in one arena), the payload hash of its lake copy and the
row that met it first; an entry whose id went to no lake copy (every copy a duplicate of the
lake's) is dead: a probe passes over it, as the old ``seen`` table never held such an id.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tiktok_pipelines.embedding._jit import load_u64, njit, prefetch
from tiktok_pipelines.embedding.hashing import mix64

_SEED = np.uint64(0x9E3779B97F4A7C15)
# A slot is one uint64: the hash's high 32 bits (a tag) and entry + 1 (0: empty), so a probe
# costs one cache line and a miss compares no bytes. The low bits of the hash pick the slot.
_LOW32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_AHEAD = 16  # probes prefetched ahead: a probe is a cache miss, bound by memory latency


@njit(inline="always")
def _hash_bytes(data, a, n):
    """A 64-bit hash of data[a:a+n]."""
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
    return h


@njit(nogil=True)
def _hash_all(offsets, data):
    n = len(offsets) - 1
    out = np.empty(n, np.uint64)
    for i in range(n):
        out[i] = _hash_bytes(data, offsets[i], offsets[i + 1] - offsets[i])
    return out


@njit(inline="always")
def _slot_of(h, cap):
    return np.int64(h & np.uint64(cap - 1))


@njit(inline="always")
def _same(data, a, n, arena, b, m):
    if n != m:
        return False
    for i in range(n):
        if data[a + i] != arena[b + i]:
            return False
    return True


@njit(nogil=True)
def _meet(offsets, data, hashes, payload, slots, e_ph, e_off, e_row, e_dead, arena, count):
    """Probe each id; add the ones not met (entry ``count``, ``count`` + 1, ...). Returns (per id
    its entry, per id whether it was met before — in an earlier call or earlier in this one, and
    then the row that met it first too — and the new count)."""
    n = len(hashes)
    cap = len(slots)
    start = count
    used = e_off[count]
    entries = np.empty(n, np.int64)
    met = np.zeros(n, np.bool_)
    for i in range(n):
        if i + _AHEAD < n:
            prefetch(slots, _slot_of(hashes[i + _AHEAD], cap))
        h = hashes[i]
        tag = h >> _S32
        a = offsets[i]
        ln = offsets[i + 1] - a
        s = _slot_of(h, cap)
        found = -1
        while slots[s] != 0:
            if slots[s] >> _S32 == tag:
                e = np.int64(slots[s] & _LOW32) - 1
                if not e_dead[e] and _same(data, a, ln, arena, e_off[e], e_off[e + 1] - e_off[e]):
                    found = e
                    break
            s = (s + 1) & (cap - 1)
        if found >= 0:
            entries[i] = found
            met[i] = True
            if found >= start:
                met[e_row[found]] = True
            continue
        for j in range(ln):
            arena[used + j] = data[a + j]
        used += ln
        e_ph[count] = payload[i]
        e_off[count + 1] = used
        e_row[count] = i
        e_dead[count] = False
        slots[s] = (tag << _S32) | np.uint64(count + 1)  # the empty slot the probe ended on
        entries[i] = count
        count += 1
    return entries, met, count


@njit(nogil=True)
def _rehash(e_off, arena, count, slots):
    cap = len(slots)
    for e in range(count):
        h = _hash_bytes(arena, e_off[e], e_off[e + 1] - e_off[e])
        s = _slot_of(h, cap)
        while slots[s] != 0:
            s = (s + 1) & (cap - 1)
        slots[s] = ((h >> _S32) << _S32) | np.uint64(e + 1)


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


def _grown(a: np.ndarray, size: int, keep: int) -> np.ndarray:
    """``a`` in a new array of ``size`` elements, its first ``keep`` copied (the rest unset)."""
    out = np.empty(size, a.dtype)
    out[:keep] = a[:keep]
    return out


class SeenIds:
    """The ids met so far, each with the payload hash of its lake copy; exact membership."""

    def __init__(self) -> None:
        self.slots = np.zeros(1 << 10, np.uint64)
        self.reset()

    def reset(self) -> None:
        """Empty, keeping the arrays grown so far: the next stream of the batch reuses their
        pages (a fresh page costs a fault, ~2 µs on a VM: ~0.5 s for a 5M-id stream)."""
        self.count = 0
        self.slots.fill(0)
        if len(self.slots) > 1 << 10:
            return
        self.e_ph = np.zeros(1 << 9, np.int64)
        self.e_off = np.zeros((1 << 9) + 1, np.int64)
        self.e_row = np.zeros(1 << 9, np.int64)
        self.e_dead = np.zeros(1 << 9, np.bool_)
        self.arena = np.zeros(1 << 14, np.uint8)

    def meet(self, offsets: np.ndarray, data: np.ndarray, hashes: np.ndarray,
             payload: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Meet a chunk's ids (``hashes``: ``hash_ids`` of them; ``payload``: each one's payload
        hash). Returns (per id its entry, per id whether it is a candidate — met in an earlier
        call, or more than once in this one, every copy then —, the first entry of this call:
        an entry below it is an earlier chunk's). A new id's entry takes its payload hash until
        ``settle`` says which copy went to the lake."""
        n = len(hashes)
        start = self.count
        need = start + n
        if need > len(self.e_ph):
            size = max(need, 2 * len(self.e_ph))
            self.e_ph = _grown(self.e_ph, size, start)
            self.e_row = _grown(self.e_row, size, start)
            self.e_dead = _grown(self.e_dead, size, start)
            self.e_off = _grown(self.e_off, size + 1, start + 1)
        used = int(self.e_off[start])
        nbytes = int(offsets[-1] - offsets[0]) if n else 0
        if used + nbytes > len(self.arena):
            self.arena = _grown(self.arena, max(used + nbytes, 2 * len(self.arena)), used)
        if 4 * need > 3 * len(self.slots):  # at most 3/4 full: short probe runs
            cap = len(self.slots)
            while 4 * need > 3 * cap:
                cap *= 2
            self.slots = np.zeros(cap, np.uint64)
            _rehash(self.e_off, self.arena, start, self.slots)
        entries, met, self.count = _meet(offsets, data, hashes, payload.astype(np.int64, copy=False), self.slots,
                                         self.e_ph, self.e_off, self.e_row, self.e_dead, self.arena, start)
        return entries, met, start

    def payload_hashes(self, entries: np.ndarray) -> np.ndarray:
        return self.e_ph[entries]

    def settle(self, entries: np.ndarray, payload: np.ndarray, lake: np.ndarray, start: int) -> None:
        """After judging the candidates of the call that began at entry ``start``: ``entries``
        of their rows, their ``payload`` hashes, and ``lake``, whether each row went to the lake.
        An entry keeps the payload hash of its lake copy; one of this call with no lake copy dies."""
        self.e_ph[entries[lake]] = payload[lake]
        mine = np.unique(entries[entries >= start])
        self.e_dead[mine[~np.isin(mine, entries[lake])]] = True
