"""Rule-based (heuristic) attribution: per-touch weights that sum to 1 within every journey.

Journeys are given in CSR layout: the touches of journey ``j`` are ``offsets[j]:offsets[j + 1]``
of flat per-touch arrays, in time order. Each function returns one weight per touch, computed for
all journeys at once (NumPy, no loop per journey). A journey's credit to a channel is the sum of
the weights of its touches on that channel times what the journey is worth (1 conversion, or its
value), so every model hands out exactly the conversions and value it was given.

- ``first_click`` / ``last_click``: weight 1 on the first / last touch. (Under the click-first window
  rule a journey with any click holds only clicks; a view-only journey's first/last touch is a view.)
- ``linear``: 1/L on each of the L touches; a channel touched twice gets two shares (repeats count).
- ``position_based`` (U-shaped 40/20/40): 0.4 on the first touch, 0.4 on the last and 0.2 split
  evenly over the touches in between; one touch takes 100%, two touches 50/50 (the ends' shares,
  renormalised, as there is no middle).
- ``time_decay``: w = 2^(-Δt / half-life), Δt = time from the touch to the conversion (default
  half-life 7 days), normalised to sum to 1 per journey. Computed relative to each journey's
  newest touch, which leaves the normalised weights unchanged and cannot underflow.
"""

from __future__ import annotations

import numpy as np

RULE_MODELS = ("first_click", "last_click", "linear", "position_based", "time_decay")
DAY_MS = 86_400_000


def _check(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    if np.any(lengths < 1):
        raise ValueError("every journey needs at least one touch")
    return offsets, lengths


def first_touch_weights(offsets: np.ndarray) -> np.ndarray:
    offsets, _ = _check(offsets)
    w = np.zeros(offsets[-1])
    w[offsets[:-1]] = 1.0
    return w


def last_touch_weights(offsets: np.ndarray) -> np.ndarray:
    offsets, _ = _check(offsets)
    w = np.zeros(offsets[-1])
    w[offsets[1:] - 1] = 1.0
    return w


def linear_weights(offsets: np.ndarray) -> np.ndarray:
    offsets, lengths = _check(offsets)
    return np.repeat(1.0 / np.maximum(lengths, 1), lengths)


def position_based_weights(offsets: np.ndarray, first_share: float = 0.4, last_share: float = 0.4) -> np.ndarray:
    """U-shaped weights; defaults 40/20/40. Two-touch journeys split first:last in the ends' ratio."""
    if first_share < 0 or last_share < 0 or first_share + last_share > 1 or first_share + last_share == 0:
        raise ValueError("shares must be non-negative, positive together, and sum to at most 1")
    offsets, lengths = _check(offsets)
    L = np.repeat(lengths, lengths)
    middle = (1.0 - first_share - last_share) / np.maximum(L - 2, 1)
    w = np.where(L >= 3, middle, 0.0)
    firsts, lasts = offsets[:-1], offsets[1:] - 1
    ends = first_share + last_share
    # L == 1: 100%; L == 2: the two ends renormalised (50/50 at 40/40); L >= 3: the shares as given
    w[firsts] = np.where(lengths == 1, 1.0, np.where(lengths == 2, first_share / ends, first_share))
    two_plus = lengths >= 2
    w[lasts[two_plus]] = np.where(lengths[two_plus] == 2, last_share / ends, last_share)
    return w


def time_decay_weights(offsets: np.ndarray, age_ms: np.ndarray, half_life_days: float = 7.0) -> np.ndarray:
    """w = 2^(-age / half-life) normalised per journey; ``age_ms`` = conversion time - touch time."""
    if half_life_days <= 0:
        raise ValueError("half_life_days must be positive")
    offsets, lengths = _check(offsets)
    age = np.asarray(age_ms, dtype=np.float64)
    if age.shape != (offsets[-1],):
        raise ValueError("age_ms needs one entry per touch")
    if np.any(age < 0):
        raise ValueError("a touch after its conversion has a negative age")
    if len(age) == 0:
        return age
    youngest = np.minimum.reduceat(age, offsets[:-1])
    w = np.exp2(-(age - np.repeat(youngest, lengths)) / (half_life_days * DAY_MS))
    return w / np.repeat(np.add.reduceat(w, offsets[:-1]), lengths)


def rule_weights(model: str, offsets: np.ndarray, age_ms: np.ndarray | None = None,
                 half_life_days: float = 7.0) -> np.ndarray:
    """Weights of ``model`` (one of :data:`RULE_MODELS`); ``time_decay`` needs ``age_ms``."""
    if model == "first_click":
        return first_touch_weights(offsets)
    if model == "last_click":
        return last_touch_weights(offsets)
    if model == "linear":
        return linear_weights(offsets)
    if model == "position_based":
        return position_based_weights(offsets)
    if model == "time_decay":
        if age_ms is None:
            raise ValueError("time_decay needs the touches' ages (timestamped journeys)")
        return time_decay_weights(offsets, age_ms, half_life_days)
    raise ValueError(f"unknown rule-based model {model!r}; expected one of {RULE_MODELS}")
