"""Row storage: one row per admitted id, with its Adagrad state, last-update time and count.

Struct-of-arrays, each indexed by row:

    embeddings[capacity, dim]    float32   the trained vector
    accumulators[capacity, dim]  float32   Adagrad sum of squared gradients (per element, as torch)
    last_update_s[capacity]      int64     seconds; drives TTL expiry
    counts[capacity]             uint32    training occurrences since the row was created
    row_ids[capacity]            int64     row -> id, so exports and expiry scan rows, not the map
    flags[capacity]              uint8     LIVE | TOUCHED (touched since the last export)

Rows never move while live (the torch module holds row numbers between forward and step);
freed rows go on a stack and are reused first. Each array is a view into an address-space
reservation (``_reserve``) that is committed as rows are touched, so growing is moving the view's
end: nothing is copied or zero-filled, and small growth steps (1/32) cost nothing. That keeps
slack under ~3%, which is what lets the table stay under 1.5x the raw embedding + optimizer bytes.
"""

from __future__ import annotations

import mmap
import sys

import numpy as np
from numba import prange

from tiktok_pipelines.embedding._jit import fma, njit, prefetch
from tiktok_pipelines.embedding.hashing import hash_id, mix64

LIVE = np.uint8(1)
TOUCHED = np.uint8(2)
_COUNT_MAX = np.uint32(0xFFFFFFFF)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_INV_2_32 = 1.0 / 4294967296.0


@njit(parallel=True)
def initial_embeddings_kernel(ids, seed, scale, out):
    """out[i] = uniform(-scale, scale)^dim drawn from a hash of (id, seed).

    A pure function of the id, so a row re-created after expiry, a row created on another shard
    and the reference model in the tests all start from the same vector, whatever the order of
    insertion. Two 32-bit uniforms per 64-bit mix.
    """
    s = np.float32(scale)
    for i in prange(ids.shape[0]):
        _fill_initial(out, i, ids[i], seed, s)


@njit(inline="always")
def _fill_initial(out, r, id_, seed, s):
    """Write id_'s initial vector into out[r]: the one definition both kernels share."""
    dim = out.shape[1]
    base = hash_id(id_, seed)
    for j in range(0, dim, 2):
        x = mix64(base + np.uint64(j) * _GOLDEN)
        u0 = np.float32((x & np.uint64(0xFFFFFFFF)) * _INV_2_32)
        out[r, j] = (np.float32(2.0) * u0 - np.float32(1.0)) * s
        if j + 1 < dim:
            u1 = np.float32((x >> np.uint64(32)) * _INV_2_32)
            out[r, j + 1] = (np.float32(2.0) * u1 - np.float32(1.0)) * s


@njit(parallel=True)
def _init_rows(rows, ids, seed, scale, accumulator_init, now_s, embeddings, accumulators,
               last_update_s, counts, row_ids, flags):
    dim = embeddings.shape[1]
    s = np.float32(scale)
    acc0 = np.float32(accumulator_init)
    for i in prange(rows.shape[0]):
        r = rows[i]
        if scale == 0.0:
            for j in range(dim):
                embeddings[r, j] = np.float32(0.0)
        else:
            _fill_initial(embeddings, r, ids[i], seed, s)
        for j in range(dim):
            accumulators[r, j] = acc0
        last_update_s[r] = now_s
        counts[r] = 0
        row_ids[r] = ids[i]
        flags[r] = LIVE | TOUCHED


_PREFETCH_DISTANCE = 8
_PARALLEL_CHUNK = 1 << 13


@njit(inline="always")
def _prefetch_row(embeddings, r):
    if r >= 0:
        # one prefetch per 64-byte line of the row (16 float32)
        for j in range(0, embeddings.shape[1], 16):
            prefetch(embeddings[r], j)


@njit(parallel=True)
def _gather(rows, embeddings, out):
    dim = embeddings.shape[1]
    n = rows.shape[0]
    n_chunks = (n + _PARALLEL_CHUNK - 1) // _PARALLEL_CHUNK
    for c in prange(n_chunks):
        lo = c * _PARALLEL_CHUNK
        hi = min(n, lo + _PARALLEL_CHUNK)
        for i in range(lo, min(lo + _PREFETCH_DISTANCE, hi)):
            _prefetch_row(embeddings, rows[i])
        for i in range(lo, hi):
            if i + _PREFETCH_DISTANCE < hi:
                _prefetch_row(embeddings, rows[i + _PREFETCH_DISTANCE])
            r = rows[i]
            if r < 0:
                for j in range(dim):
                    out[i, j] = np.float32(0.0)
            else:
                for j in range(dim):
                    out[i, j] = embeddings[r, j]


@njit
def _touch(rows, now_s, counts, last_update_s, flags):
    # Serial on purpose: a batch repeats hot ids, and racing increments would drop counts.
    for i in range(rows.shape[0]):
        r = rows[i]
        if r >= 0:
            if counts[r] < _COUNT_MAX:
                counts[r] += np.uint32(1)
            last_update_s[r] = now_s
            flags[r] |= TOUCHED


@njit(parallel=True)
def _adagrad(rows, grads, lr, eps, now_s, embeddings, accumulators, last_update_s, flags):
    """torch.optim.Adagrad's dense update (lr_decay=0, weight_decay=0), restricted to ``rows``:

        state_sum.addcmul_(g, g); std = state_sum.sqrt().add_(eps); p.addcdiv_(g, std, value=-lr)

    in float32 with the same operation order and roundings (torch's addcmul kernel is a fused
    multiply-add, its addcdiv is not), so a row's values match torch bit for bit. Rows not
    in the batch have zero gradient, for which torch's update is an exact no-op, so skipping them
    is not an approximation. ``rows`` must be unique (parallel writes).

    One difference remains: our sqrt is correctly rounded, torch's vectorised float32 sqrt is
    not (±1 ulp on ~15% of elements on this build), so results agree to ~1 ulp per step. The
    torch module therefore runs torch's own functional Adagrad on the gathered rows instead.
    """
    dim = embeddings.shape[1]
    neg_lr = np.float32(-lr)
    eps32 = np.float32(eps)
    for i in prange(rows.shape[0]):
        r = rows[i]
        for j in range(dim):
            g = grads[i, j]
            acc = fma(g, g, accumulators[r, j])
            accumulators[r, j] = acc
            std = np.float32(np.sqrt(acc)) + eps32  # float32 all the way, as torch
            embeddings[r, j] = embeddings[r, j] + neg_lr * g / std
        last_update_s[r] = now_s
        flags[r] |= TOUCHED


# Rows a region reserves up front, bounded by bytes of address space (not memory) per array.
RESERVE_ROWS = 1 << 27
RESERVE_MAX_BYTES = 64 << 30
# Python < 3.12 lacks mmap.MAP_NORESERVE; Linux's value is 0x4000 on every architecture we run on.
# Without it the default overcommit heuristic refuses reservations larger than RAM + swap.
_MAP_FLAGS = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(
    mmap, "MAP_NORESERVE", 0x4000 if sys.platform.startswith("linux") else 0
)


def _reserve(min_rows: int, row_shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A zeroed array of at least ``min_rows`` rows whose memory is committed only when touched.

    Why: growing numpy arrays by ``resize`` (realloc) zero-fills each new part and faults it in
    4 KiB pages, which cost more than the inserts that needed the rows (1.0 of 3.0 s for 10M
    fresh ids). An anonymous ``MAP_NORESERVE`` mapping reserves address space only: pages are
    zero when first touched, transparent huge pages (where the kernel allows them) cut the
    faults 512-fold, and rows never move, so growth is free. The memory the table uses is still
    the rows it touched, which is what ``nbytes`` reports, rounded up to whole pages: with huge
    pages even a tiny table holds one 2 MiB page per array.
    """
    per_row = int(np.prod(row_shape, dtype=np.int64))
    itemsize = np.dtype(dtype).itemsize * per_row
    rows = max(int(min_rows), min(RESERVE_ROWS, RESERVE_MAX_BYTES // itemsize))
    while True:
        try:
            region = mmap.mmap(-1, max(rows * itemsize, 1), flags=_MAP_FLAGS)
            break
        except OSError:
            # The kernel refused that much address space (strict overcommit, or no
            # MAP_NORESERVE): ask for less. Pages are still committed only when touched.
            if rows <= 2 * min_rows:
                # Plain memory, with headroom so growth copies stay amortised O(1) per row.
                return np.zeros((2 * int(min_rows), *row_shape), dtype=dtype)
            rows //= 2
    if hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            region.madvise(mmap.MADV_HUGEPAGE)
        except OSError:
            pass
    return np.frombuffer(region, dtype=dtype, count=rows * per_row).reshape(rows, *row_shape)


class RowStorage:
    """Rows plus the allocator the cuckoo map draws from (``free_rows``/``free_top``/``next_row``)."""

    GROWTH_FRACTION = 32  # grow by capacity/32: slack stays under ~3% of live rows
    MIN_GROWTH_ROWS = 4096

    def __init__(self, dim: int, capacity: int = 1024) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = int(dim)
        capacity = max(int(capacity), 1)
        self.free_rows = np.zeros(64, dtype=np.int64)
        self.free_top = 0
        self.next_row = 0  # high-water mark: rows >= next_row were never used
        self._regions: dict[str, np.ndarray] = {}
        self._capacity = 0
        self._resize(capacity)

    # --- allocator ----------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def num_live(self) -> int:
        return self.next_row - self.free_top

    def grow(self, rows_wanted: int = 0) -> None:
        """Called when the allocator runs dry with ``rows_wanted`` (an upper bound: the admitted
        ids left in the batch) still to place: grow once for the whole batch, but by at least
        capacity/32 rows so a stream of small batches does not resize every time."""
        step = max(self.capacity // self.GROWTH_FRACTION, self.MIN_GROWTH_ROWS)
        self._resize(max(self.capacity + step, self.next_row + rows_wanted))

    def reserve(self, n_rows: int) -> None:
        """Pre-size for rows [0, n_rows) (e.g. before loading a snapshot)."""
        if n_rows > self.capacity:
            self._resize(n_rows)

    # Each array is a view of the first ``capacity`` rows of a reserved region (see _reserve):
    # growing moves the view's end, without copying, zero-filling or remapping anything.
    _COLUMNS = (
        ("embeddings", np.float32, True),
        ("accumulators", np.float32, True),
        ("last_update_s", np.int64, False),
        ("counts", np.uint32, False),
        ("row_ids", np.int64, False),
        ("flags", np.uint8, False),
    )

    def _resize(self, capacity: int) -> None:
        for name, dtype, per_dim in self._COLUMNS:
            row_shape = (self.dim,) if per_dim else ()
            region = self._regions.get(name)
            if region is None or region.shape[0] < capacity:
                bigger = _reserve(capacity, row_shape, dtype)
                if region is not None:
                    # Outgrew the reservation (rare: it is sized for ~10^8 rows): copy the live
                    # prefix once into a larger one.
                    bigger[: self.next_row] = region[: self.next_row]
                region = self._regions[name] = bigger
            setattr(self, name, region[:capacity])
        self._capacity = int(capacity)

    def free(self, rows: np.ndarray) -> None:
        """Return rows (>= 0, unique) to the allocator."""
        rows = rows[rows >= 0]
        if rows.size == 0:
            return
        self.flags[rows] = 0
        need = self.free_top + rows.size
        if need > self.free_rows.size:
            self.free_rows.resize(max(need, 2 * self.free_rows.size), refcheck=False)
        self.free_rows[self.free_top : need] = rows
        self.free_top = need

    # --- row operations -----------------------------------------------------------------------
    def init_rows(self, rows: np.ndarray, ids: np.ndarray, now_s: int, *, seed: int, init_scale: float,
                  accumulator_init: float) -> None:
        if rows.size:
            _init_rows(rows, np.ascontiguousarray(ids, dtype=np.int64), np.uint64(seed), float(init_scale),
                       float(accumulator_init), np.int64(now_s), self.embeddings, self.accumulators,
                       self.last_update_s, self.counts, self.row_ids, self.flags)

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """embeddings float32[n, dim] for rows int64[n]; row -1 reads zeros (an unadmitted id)."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        out = np.empty((rows.shape[0], self.dim), dtype=np.float32)
        _gather(rows, self.embeddings, out)
        return out

    def touch(self, rows: np.ndarray, now_s: int) -> None:
        _touch(np.ascontiguousarray(rows, dtype=np.int64), np.int64(now_s), self.counts,
               self.last_update_s, self.flags)

    def apply_adagrad(self, rows: np.ndarray, grads: np.ndarray, *, lr: float, eps: float, now_s: int) -> None:
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        grads = np.ascontiguousarray(grads, dtype=np.float32)
        if grads.shape != (rows.shape[0], self.dim):
            raise ValueError(f"grads must be [{rows.shape[0]}, {self.dim}], got {list(grads.shape)}")
        if rows.size and (rows.min() < 0 or rows.max() >= self.next_row):
            raise IndexError("apply_adagrad got a row that is not allocated")
        _adagrad(rows, grads, float(lr), float(eps), np.int64(now_s), self.embeddings,
                 self.accumulators, self.last_update_s, self.flags)

    def write_rows(self, rows: np.ndarray, embeddings: np.ndarray, accumulators: np.ndarray, now_s: int) -> None:
        """Store updated values for allocated rows (an optimizer computed elsewhere)."""
        self.embeddings[rows] = embeddings
        self.accumulators[rows] = accumulators
        self.last_update_s[rows] = now_s
        self.flags[rows] |= TOUCHED

    def live_rows(self) -> np.ndarray:
        return np.flatnonzero(self.flags[: self.next_row] & LIVE)

    def touched_rows(self) -> np.ndarray:
        return np.flatnonzero(self.flags[: self.next_row] & TOUCHED)

    def clear_touched(self) -> None:
        self.flags[: self.next_row] &= ~TOUCHED

    @property
    def nbytes(self) -> int:
        return int(
            self.embeddings.nbytes + self.accumulators.nbytes + self.last_update_s.nbytes
            + self.counts.nbytes + self.row_ids.nbytes + self.flags.nbytes + self.free_rows.nbytes
        )
