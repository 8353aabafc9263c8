"""Deterministic random streams keyed by (seed, purpose, day, ...).

Every piece of randomness comes from its own key, so any day of the world can be generated without
replaying the days before it, and adding a new draw somewhere never shifts the draws elsewhere.
"""

from __future__ import annotations

import zlib

import numpy as np


def _key_int(k: object) -> int:
    if isinstance(k, (int, np.integer)):
        v = int(k)
        if v < 0:
            raise ValueError(f"rng key parts must be non-negative, got {v}")
        return v
    return zlib.crc32(str(k).encode("utf-8"))


def rng_for(seed: int, *keys: object) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``keys`` (ints or strings)."""
    return np.random.default_rng(np.random.SeedSequence([_key_int(seed), *(_key_int(k) for k in keys)]))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def sample_weighted(rng: np.random.Generator, cum_weights: np.ndarray, n: int) -> np.ndarray:
    """``n`` indices drawn with probability proportional to the weights whose cumsum is given."""
    u = rng.random(n) * cum_weights[-1]
    return np.minimum(np.searchsorted(cum_weights, u, side="right"), len(cum_weights) - 1)


class GroupedSampler:
    """Draw a member of a group (e.g. a video of a category) with per-member weights, vectorised.

    Members are laid out group by group; each group's cumulative weights are normalised into
    ``[g, g + 1)``, so one ``searchsorted`` over ``group + u`` samples every row at once.
    Empty groups fall back to sampling from all members by weight.
    """

    def __init__(self, groups: np.ndarray, weights: np.ndarray, n_groups: int):
        groups = np.asarray(groups, dtype=np.int64)
        weights = np.asarray(weights, dtype=np.float64)
        order = np.argsort(groups, kind="stable")
        self.members = order
        g = groups[order]
        w = weights[order]
        counts = np.bincount(g, minlength=n_groups)
        self.counts = counts
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        cw = np.cumsum(w)
        nonempty = counts > 0
        s_ne, c_ne = starts[nonempty], counts[nonempty]
        group_base = np.repeat((cw - w)[s_ne], c_ne)
        group_total = np.repeat(np.add.reduceat(w, s_ne), c_ne) if len(w) else w
        frac = (cw - group_base) / np.maximum(group_total, 1e-300)
        self.keys = g + np.minimum(frac, 1.0 - 1e-12)
        self.global_cum = np.cumsum(weights)
        self.n_groups = n_groups

    def sample(self, rng: np.random.Generator, group: np.ndarray) -> np.ndarray:
        group = np.asarray(group, dtype=np.int64)
        u = rng.random(len(group))
        idx = np.searchsorted(self.keys, group + u, side="left")
        idx = np.minimum(idx, len(self.members) - 1)
        out = self.members[idx]
        empty = self.counts[group] == 0
        if empty.any():
            out[empty] = sample_weighted(rng, self.global_cum, int(empty.sum()))
        return out
