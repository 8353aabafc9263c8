"""First-order Markov attribution with exact removal effects (no simulation).

The chain (as in the R package ChannelAttribution, ``markov_model(order = 1)``): transient states
``(start)`` and one per channel, absorbing states ``(conversion)`` and ``(null)``. Every journey
contributes its weight (conversions + nulls) to ``(start) -> c1 -> c2 -> ... -> cL``, then its
conversions to ``cL -> (conversion)`` and its nulls to ``cL -> (null)``; transition probabilities
are the counts normalised per state.

Consecutive repeats of one channel are collapsed first (``A>A>B`` -> ``A>B``). That changes
nothing: a self-loop only delays the chain, so absorption probabilities are the same with or
without it, and removing a channel removes its self-loop too. It makes "Markov is unchanged when
repeated touches are collapsed" hold by construction.

Closed form. With Q the transient-to-transient matrix, N = (I - Q)^-1 the fundamental matrix and
r_j = P(j -> conversion), the conversion probability from each state is h = N r and
P = h[start]. Removing channel c (every transition into c goes to ``(null)``) leaves the paths that
never visit c, so by the strong Markov property

    P_without_c = P - f_c * h_c,   f_c = P(visit c from start) = N[start, c] / N[c, c]

and the removal effect is RE_c = 1 - P_without_c / P = f_c h_c / P. One matrix inverse gives
every channel's removal effect exactly.

Credits (the ChannelAttribution convention): credit_c = total_conversions * RE_c / sum_k RE_k.

Value: each ``c -> (conversion)`` transition carries the mean value of the journeys that converted
from c (ChannelAttribution's value model attaches conversion values to the last channel). The
expected value is E = (N rv)[start] with rv_j = (value converted from j) / (journeys leaving j); the
value removal effect is REV_c = f_c hv_c / E and value credit_c = total_value * REV_c / sum REV.
With equal values everywhere REV = RE.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tiktok_pipelines.attribution.paths import Paths


@dataclass(frozen=True)
class MarkovResult:
    channels: tuple[str, ...]
    removal_effect: np.ndarray  # per channel, conversions
    removal_effect_value: np.ndarray  # per channel, value
    conversions: np.ndarray  # credited conversions per channel (sum = total conversions)
    value: np.ndarray  # credited value per channel (sum = total value)
    conversion_probability: float  # P(start -> conversion) of the fitted chain
    expected_value: float  # E[value] per journey of the fitted chain
    transitions: np.ndarray  # (K+1) x (K+3) probabilities; rows: channels..., start; cols: channels..., start, conversion, null

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {c: {"removal_effect": float(self.removal_effect[i]), "conversions": float(self.conversions[i]),
                    "removal_effect_value": float(self.removal_effect_value[i]), "value": float(self.value[i])}
                for i, c in enumerate(self.channels)}


def transition_counts(paths: Paths) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Counts of the collapsed paths: (K+1)x(K+1) transient counts (index K = start), and per
    channel the conversions, value and nulls that leave from it."""
    p = paths.collapsed()
    k = len(p.channels)
    n = k + 1
    w = p.conversions + p.nulls
    counts = np.zeros(n * n)
    if p.n_paths:
        first = p.touches[p.offsets[:-1]]
        np.add.at(counts, k * n + first, w)
        path = p.path_of_touch
        inner = np.ones(len(p.touches), dtype=bool)
        inner[p.offsets[1:] - 1] = False  # a path's last touch has no successor in the path
        src = np.flatnonzero(inner)
        counts += np.bincount(p.touches[src] * n + p.touches[src + 1], weights=w[path[src]], minlength=n * n)
        last = p.touches[p.offsets[1:] - 1]
        conv_out = np.bincount(last, weights=p.conversions, minlength=k)
        value_out = np.bincount(last, weights=p.value, minlength=k)
        null_out = np.bincount(last, weights=p.nulls, minlength=k)
    else:
        conv_out = value_out = null_out = np.zeros(k)
    return counts.reshape(n, n), conv_out, value_out, null_out


def markov_attribution(paths: Paths) -> MarkovResult:
    """Exact first-order Markov removal effects and credits (see the module docstring)."""
    k = len(paths.channels)
    start = k
    counts, conv_out, value_out, null_out = transition_counts(paths)
    out = counts.sum(axis=1)
    out[:k] += conv_out + null_out
    safe = np.where(out > 0, out, 1.0)
    q = counts / safe[:, None]
    r = np.append(conv_out, 0.0) / safe
    rv = np.append(value_out, 0.0) / safe
    fundamental = np.linalg.inv(np.eye(k + 1) - q)
    h, hv = fundamental @ r, fundamental @ rv
    prob, expected = float(h[start]), float(hv[start])
    visit = np.clip(fundamental[start, :k] / np.diag(fundamental)[:k], 0.0, 1.0)

    def effects(h_c: np.ndarray, total_p: float) -> np.ndarray:
        if total_p <= 0:
            return np.zeros(k)
        return np.clip(visit * h_c / total_p, 0.0, 1.0)

    re, rev = effects(h[:k], prob), effects(hv[:k], expected)

    def share(effect: np.ndarray, total: float) -> np.ndarray:
        s = effect.sum()
        return total * effect / s if s > 0 and total > 0 else np.zeros(k)

    transitions = np.concatenate([q, r[:, None], (np.append(null_out, 0.0) / safe)[:, None]], axis=1)
    return MarkovResult(
        channels=paths.channels, removal_effect=re, removal_effect_value=rev,
        conversions=share(re, paths.total_conversions), value=share(rev, paths.total_value),
        conversion_probability=prob, expected_value=expected, transitions=transitions,
    )


def removal_effects_by_resolving(paths: Paths) -> np.ndarray:
    """Reference implementation for tests: re-solve the chain once per removed channel."""
    k = len(paths.channels)
    counts, conv_out, _, null_out = transition_counts(paths)
    out = counts.sum(axis=1)
    out[:k] += conv_out + null_out
    safe = np.where(out > 0, out, 1.0)
    q = counts / safe[:, None]
    r = np.append(conv_out, 0.0) / safe
    base = np.linalg.solve(np.eye(k + 1) - q, r)[k]
    effects = np.zeros(k)
    for c in range(k):
        keep = np.array([i for i in range(k + 1) if i != c])
        h = np.linalg.solve(np.eye(k) - q[np.ix_(keep, keep)], r[keep])
        effects[c] = 1.0 - h[-1] / base if base > 0 else 0.0
    return effects
