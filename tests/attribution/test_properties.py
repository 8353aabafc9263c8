"""Invariants on every output: credits sum to what they split, none negative, and Markov does not
see repeated touches of one channel."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiktok_pipelines.attribution import Paths, attribute_paths, markov_attribution
from tiktok_pipelines.attribution.rules import RULE_MODELS, rule_weights

CHANNELS = list("ABCDE")
journey = st.tuples(
    st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=7),
    st.integers(0, 5),  # conversions
    st.floats(0, 1_000, allow_nan=False),  # value
    st.integers(0, 5),  # nulls
)
path_data = st.lists(journey, min_size=1, max_size=25)
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _paths(rows) -> Paths:
    # value only comes with conversions (Paths refuses value on a path with none)
    return Paths.from_sequences([r[0] for r in rows], [r[1] for r in rows], [r[2] if r[1] else 0.0 for r in rows],
                                [r[3] for r in rows])


def _collapse(seq: list[str]) -> list[str]:
    # written out independently of Paths.collapsed, which the model uses
    return [c for i, c in enumerate(seq) if i == 0 or seq[i - 1] != c]


@SETTINGS
@given(path_data)
def test_every_model_sums_to_conversions_and_value_and_is_non_negative(rows):
    paths = _paths(rows)
    result = attribute_paths(paths)
    total_c, total_v = paths.total_conversions, paths.total_value
    for model in result.conversions:
        c, v = result.conversions[model], result.value[model]
        assert c.sum() == pytest.approx(total_c, rel=1e-9, abs=1e-9), model
        assert v.sum() == pytest.approx(total_v, rel=1e-9, abs=1e-7), model
        assert (c >= 0).all() and (v >= 0).all(), model
    re = result.markov.removal_effect
    assert ((re >= 0) & (re <= 1)).all()


@SETTINGS
@given(path_data)
def test_markov_unchanged_when_repeats_are_collapsed(rows):
    raw = _paths(rows)
    collapsed = _paths([(_collapse(s), c, v, n) for s, c, v, n in rows])
    a, b = markov_attribution(raw), markov_attribution(collapsed)
    assert a.channels == b.channels
    assert a.removal_effect == pytest.approx(b.removal_effect, abs=1e-12)
    assert a.conversions == pytest.approx(b.conversions, abs=1e-9)
    assert a.value == pytest.approx(b.value, abs=1e-7)


@SETTINGS
@given(st.lists(st.lists(st.integers(0, 60 * 86_400_000), min_size=1, max_size=8), min_size=1, max_size=20))
def test_touch_level_weights_sum_to_one_per_journey(ages):
    lengths = np.array([len(a) for a in ages])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    age = np.concatenate([np.sort(a)[::-1] for a in ages]).astype(np.int64)  # oldest first, in time order
    for model in RULE_MODELS:
        w = rule_weights(model, offsets, age_ms=age)
        assert (w >= 0).all(), model
        assert np.add.reduceat(w, offsets[:-1]) == pytest.approx(np.ones(len(ages)), abs=1e-12), model
    # time decay: a younger touch never weighs less than an older one in the same journey
    w = rule_weights("time_decay", offsets, age_ms=age)
    for a, b in itertools.pairwise(offsets):
        assert (np.diff(w[a:b]) >= -1e-15).all()
