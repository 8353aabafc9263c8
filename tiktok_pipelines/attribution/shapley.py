"""Exact Shapley values, for any characteristic function and for path data.

Shapley value of player i in a game v over players N (|N| = n):

    phi_i = sum over S subset of N \\ {i} of |S|! (n - |S| - 1)! / n! * (v(S u {i}) - v(S))

:func:`shapley_values` evaluates this by enumerating all 2^n coalitions as bit masks (vectorised,
O(n 2^n)); it refuses more than :data:`MAX_EXACT_PLAYERS` players, where 2^n coalitions stop
fitting in memory and time.

Path data. The characteristic function of a set of channels S is

    v(S) = conversions (or value) of the journeys whose set of channels is a subset of S,

i.e. what S would have earned on its own. Journeys are aggregated per channel-set mask and the
subset sums are a zeta transform over the masks. v is monotone, so every marginal contribution and
every credit is >= 0, and sum_i phi_i = v(N) = all conversions (efficiency).

Identity used beyond 20 channels: this v is a sum of unanimity games, v = sum_p conv_p u_{T_p}
with T_p the channel set of journey p, and the Shapley value of u_T gives 1/|T| to each member of
T. So phi_i = sum of conv_p / |T_p| over the journeys that touched i: a linear split over each
journey's *distinct* channels. :func:`path_shapley` enumerates coalitions exactly as defined up
to 20 channels (the tests check both agree) and uses this identity above, which is still exact.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping

import numpy as np

from tiktok_pipelines.attribution.paths import Paths

MAX_EXACT_PLAYERS = 20


def _popcount(masks: np.ndarray, n: int) -> np.ndarray:
    pc = np.zeros(len(masks), dtype=np.int64)
    for b in range(n):
        pc += (masks >> b) & 1
    return pc


def shapley_from_table(values: np.ndarray, n: int) -> np.ndarray:
    """Shapley values for a game given as an array over masks (bit b = player b).

    ``values`` has shape (2^n,) or (2^n, m) for m games at once; returns (n,) or (n, m).
    """
    if n > MAX_EXACT_PLAYERS:
        raise ValueError(f"exact Shapley over {n} players needs 2^{n} coalitions; refusing more than "
                         f"{MAX_EXACT_PLAYERS} (aggregate channels first)")
    v = np.asarray(values, dtype=np.float64)
    if v.shape[0] != 1 << n:
        raise ValueError(f"expected {1 << n} coalition values for {n} players, got {v.shape[0]}")
    if n == 0:
        return np.zeros((0,) + v.shape[1:])
    masks = np.arange(1 << n, dtype=np.int64)
    size = _popcount(masks, n)
    fact = np.array([math.factorial(s) for s in range(n + 1)], dtype=np.float64)
    weight_by_size = fact[:n] * fact[n - 1::-1] / fact[n]  # |S|! (n-|S|-1)! / n!, |S| = 0..n-1
    out = np.zeros((n,) + v.shape[1:])
    for i in range(n):
        bit = 1 << i
        without = masks[(masks & bit) == 0]
        w = weight_by_size[size[without]]
        gain = v[without | bit] - v[without]
        out[i] = np.tensordot(w, gain, axes=(0, 0))
    return out


def shapley_values(v: Mapping[frozenset, float], players: list[Hashable] | None = None) -> dict[Hashable, float]:
    """Exact Shapley values of the game ``v`` (frozenset of players -> worth).

    Every non-empty coalition must be present; v(empty set) defaults to 0. ``players`` fixes the
    player order (default: the union of the keys, sorted by repr). Example::

        >>> v = {frozenset("A"): 1, frozenset("B"): 2, frozenset("C"): 0, frozenset("AB"): 4,
        ...      frozenset("AC"): 2, frozenset("BC"): 3, frozenset("ABC"): 6}
        >>> {k: round(x, 9) for k, x in shapley_values(v).items()}
        {'A': 2.0, 'B': 3.0, 'C': 1.0}
    """
    if players is None:
        players = sorted({p for s in v for p in s}, key=repr)
    n = len(players)
    if n > MAX_EXACT_PLAYERS:
        raise ValueError(f"exact Shapley over {n} players needs 2^{n} coalitions; refusing more than "
                         f"{MAX_EXACT_PLAYERS}")
    index = {p: i for i, p in enumerate(players)}
    table = np.full(1 << n, np.nan)
    table[0] = 0.0
    for coalition, worth in v.items():
        unknown = [p for p in coalition if p not in index]
        if unknown:
            raise ValueError(f"coalition {sorted(coalition, key=repr)} names unknown players {unknown}")
        table[sum(1 << index[p] for p in coalition)] = float(worth)
    missing = np.flatnonzero(np.isnan(table))
    if len(missing):
        m = int(missing[0])
        example = sorted((p for p in players if m >> index[p] & 1), key=repr)
        raise ValueError(f"v is missing {len(missing)} coalition(s), e.g. {example}")
    phi = shapley_from_table(table, n)
    return {p: float(phi[i]) for i, p in enumerate(players)}


def path_characteristic_table(paths: Paths) -> np.ndarray:
    """(2^K, 2) table of v(S) for conversions and value: journeys whose channel set is within S."""
    k = len(paths.channels)
    if k > MAX_EXACT_PLAYERS:
        raise ValueError(f"{k} channels: the characteristic function has 2^{k} entries; refusing more than "
                         f"{MAX_EXACT_PLAYERS}")
    table = np.zeros((1 << k, 2))
    if paths.n_paths:
        masks = np.bitwise_or.reduceat(np.left_shift(1, paths.touches), paths.offsets[:-1])
        table[:, 0] = np.bincount(masks, weights=paths.conversions, minlength=1 << k)
        table[:, 1] = np.bincount(masks, weights=paths.value, minlength=1 << k)
    # zeta transform: table[S] = sum of table[T] over T subset of S, one bit at a time
    for b in range(k):
        view = table.reshape(-1, 2, 1 << b, 2)  # axis 1 = bit b of the mask
        view[:, 1] += view[:, 0]
    return table


def path_characteristic_function(paths: Paths) -> dict[frozenset, float]:
    """v(S) as a dict (conversions), for inspection and for :func:`shapley_values`."""
    table = path_characteristic_table(paths)
    k = len(paths.channels)
    return {frozenset(c for b, c in enumerate(paths.channels) if m >> b & 1): float(table[m, 0])
            for m in range(1, 1 << k)}


def shapley_by_unanimity(paths: Paths) -> tuple[np.ndarray, np.ndarray]:
    """Closed form of the path game's Shapley value: each journey split over its distinct channels."""
    k = len(paths.channels)
    if not paths.n_paths:
        return np.zeros(k), np.zeros(k)
    path = paths.path_of_touch
    key = path * max(k, 1) + paths.touches
    uniq = np.unique(key)  # distinct (path, channel) pairs
    upath, uchan = uniq // max(k, 1), uniq % max(k, 1)
    distinct = np.bincount(upath, minlength=paths.n_paths)
    conv = np.bincount(uchan, weights=paths.conversions[upath] / distinct[upath], minlength=k)
    value = np.bincount(uchan, weights=paths.value[upath] / distinct[upath], minlength=k)
    return conv, value


def path_shapley(paths: Paths) -> tuple[np.ndarray, np.ndarray]:
    """Shapley credits per channel (conversions, value) of the path game above."""
    k = len(paths.channels)
    if k > MAX_EXACT_PLAYERS:
        return shapley_by_unanimity(paths)
    phi = shapley_from_table(path_characteristic_table(paths), k)
    return phi[:, 0], phi[:, 1]
