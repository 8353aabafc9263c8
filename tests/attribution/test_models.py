"""The exact cases of issue 5 part 4, on path data and on timestamped touches."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tiktok_pipelines.attribution import (
    Paths,
    attribute_paths,
    markov_attribution,
    path_characteristic_function,
    path_shapley,
    shapley_values,
)
from tiktok_pipelines.attribution.markov import removal_effects_by_resolving
from tiktok_pipelines.attribution.rules import (
    DAY_MS,
    RULE_MODELS,
    position_based_weights,
    rule_weights,
    time_decay_weights,
)
from tiktok_pipelines.attribution.shapley import shapley_by_unanimity


def _by_channel(paths: Paths, arr: np.ndarray) -> dict[str, float]:
    return dict(zip(paths.channels, arr.tolist()))


def test_markov_three_channels_exact():
    paths = Paths.from_sequences([["C1", "C2", "C3"], ["C1"], ["C2", "C3"]], [1, 0, 0], [5, 0, 0], [0, 1, 1])
    m = markov_attribution(paths)
    assert m.channels == ("C1", "C2", "C3")
    assert m.conversion_probability == pytest.approx(1 / 3, abs=1e-12)
    assert m.removal_effect == pytest.approx([0.5, 1.0, 1.0], abs=1e-12)
    assert m.conversions == pytest.approx([0.2, 0.4, 0.4], abs=1e-12)
    assert m.value == pytest.approx([1.0, 2.0, 2.0], abs=1e-12)  # value 5 split the same way
    # the one-inverse closed form agrees with re-solving the chain once per removed channel
    assert removal_effects_by_resolving(paths) == pytest.approx(m.removal_effect, abs=1e-12)


def test_markov_google_ads_mailing_exact():
    # one line per journey, as a tool that does not aggregate would export them
    paths = Paths.from_sequences(
        [["google_ads"], ["google_ads"], ["mailing"], ["google_ads", "mailing"], ["google_ads"]],
        [1, 1, 1, 1, 0], nulls=[0, 0, 0, 0, 1])
    m = markov_attribution(paths)
    assert m.conversion_probability == pytest.approx(0.8, abs=1e-12)
    assert _by_channel(paths, m.removal_effect) == pytest.approx({"google_ads": 0.75, "mailing": 0.5}, abs=1e-12)
    assert _by_channel(paths, m.conversions) == pytest.approx({"google_ads": 2.4, "mailing": 1.6}, abs=1e-12)
    # aggregating identical paths first changes nothing
    agg = markov_attribution(paths.aggregated())
    assert agg.conversions == pytest.approx(m.conversions, abs=1e-12)


def test_position_based_and_time_decay_four_touches():
    offsets = np.array([0, 4])
    assert position_based_weights(offsets) == pytest.approx([0.4, 0.1, 0.1, 0.4], abs=1e-12)
    w = time_decay_weights(offsets, np.array([14, 7, 1, 0]) * DAY_MS)
    assert np.round(w, 6).tolist() == [0.094136, 0.188273, 0.341046, 0.376545]
    assert rule_weights("first_click", offsets).tolist() == [1, 0, 0, 0]
    assert rule_weights("last_click", offsets).tolist() == [0, 0, 0, 1]
    assert rule_weights("linear", offsets) == pytest.approx([0.25] * 4)


def test_two_touch_position_based_is_fifty_fifty():
    assert position_based_weights(np.array([0, 2])).tolist() == [0.5, 0.5]
    # several journeys at once: lengths 1, 2, 3, 5
    w = position_based_weights(np.array([0, 1, 3, 6, 11]))
    assert w == pytest.approx([1, 0.5, 0.5, 0.4, 0.2, 0.4, 0.4, 0.2 / 3, 0.2 / 3, 0.2 / 3, 0.4])


def test_one_touch_journey_gets_everything_in_every_model():
    for model in RULE_MODELS:
        assert rule_weights(model, np.array([0, 1]), age_ms=np.array([3 * DAY_MS])).tolist() == [1.0]
    paths = Paths.from_sequences([["A"], ["B", "A"]], [3, 0], [120, 0], [0, 2])
    result = attribute_paths(Paths.from_sequences([["A"]], [3], [120], [2]))
    for model, credits in result.conversions.items():
        assert credits.tolist() == pytest.approx([3.0]), model
        assert result.value[model].tolist() == pytest.approx([120.0]), model
    # a one-touch converting journey among other (null) journeys: every model but Markov credits A only;
    # Markov may credit B, which leads to A in the chain, but A's share is 100% of its own journey's worth
    r2 = attribute_paths(paths)
    for model in ("first_click", "last_click", "linear", "position_based", "shapley"):
        assert _by_channel(paths, r2.conversions[model]) == pytest.approx({"A": 3.0, "B": 0.0}), model


def test_shapley_example_game():
    v = {frozenset("A"): 1, frozenset("B"): 2, frozenset("C"): 0, frozenset("AB"): 4,
         frozenset("AC"): 2, frozenset("BC"): 3, frozenset("ABC"): 6}
    assert shapley_values(v) == pytest.approx({"A": 2.0, "B": 3.0, "C": 1.0}, abs=1e-12)


def test_shapley_refuses_missing_coalitions_and_too_many_players():
    with pytest.raises(ValueError, match="missing 1 coalition"):
        shapley_values({frozenset("A"): 1, frozenset("B"): 2})
    with pytest.raises(ValueError, match="refusing more than 20"):
        shapley_values({frozenset(range(21)): 1.0})


def test_path_characteristic_function_is_the_subset_rule():
    paths = Paths.from_sequences([["A"], ["A", "B"], ["B", "C", "B"], ["C"]], [1, 2, 4, 8], [0, 0, 0, 0], [5, 0, 0, 0])
    v = path_characteristic_function(paths)
    # v(S) = conversions of journeys whose channel set is within S
    assert v[frozenset("A")] == 1 and v[frozenset("AB")] == 3 and v[frozenset("BC")] == 12
    assert v[frozenset("AC")] == 9 and v[frozenset("ABC")] == 15 and v[frozenset("B")] == 0
    phi = shapley_values(v)
    conv, _ = path_shapley(paths)
    assert _by_channel(paths, conv) == pytest.approx(phi, abs=1e-12)
    # each journey split over its distinct channels: A 1 + 2/2, B 2/2 + 4/2, C 4/2 + 8
    assert phi == pytest.approx({"A": 2.0, "B": 3.0, "C": 10.0}, abs=1e-12)


def test_shapley_enumeration_agrees_with_unanimity_closed_form():
    rng = np.random.default_rng(5)
    names = [f"ch{i}" for i in range(9)]
    seqs = [list(rng.choice(names, size=rng.integers(1, 6))) for _ in range(300)]
    conv = rng.integers(0, 4, 300)
    paths = Paths.from_sequences(seqs, conv, rng.random(300) * 100 * conv, rng.integers(0, 3, 300))
    exact_c, exact_v = path_shapley(paths)
    closed_c, closed_v = shapley_by_unanimity(paths)
    assert exact_c == pytest.approx(closed_c, rel=1e-9, abs=1e-9)
    assert exact_v == pytest.approx(closed_v, rel=1e-9, abs=1e-9)


def test_markov_closed_form_matches_resolving_with_cycles():
    rng = np.random.default_rng(11)
    names = list("ABCDEFG")
    seqs = [list(rng.choice(names, size=rng.integers(1, 8))) for _ in range(400)]  # revisits make cycles
    conv = rng.integers(0, 3, 400)
    paths = Paths.from_sequences(seqs, conv, rng.random(400) * conv, rng.integers(0, 4, 400))
    m = markov_attribution(paths)
    assert m.removal_effect == pytest.approx(removal_effects_by_resolving(paths), abs=1e-10)


def test_markov_value_equals_conversions_when_values_are_equal():
    rng = np.random.default_rng(3)
    seqs = [list(rng.choice(list("WXYZ"), size=rng.integers(1, 5))) for _ in range(100)]
    conv = rng.integers(0, 4, 100)
    paths = Paths.from_sequences(seqs, conv, conv * 25.0, rng.integers(0, 4, 100))
    m = markov_attribution(paths)
    assert m.removal_effect_value == pytest.approx(m.removal_effect, abs=1e-12)
    assert m.value == pytest.approx(m.conversions * 25.0, abs=1e-9)


def test_linear_counts_repeats():
    paths = Paths.from_sequences([["A", "A", "B"]], [3], [30])
    r = attribute_paths(paths)
    assert _by_channel(paths, r.conversions["linear"]) == pytest.approx({"A": 2.0, "B": 1.0})
    assert _by_channel(paths, r.conversions["shapley"]) == pytest.approx({"A": 1.5, "B": 1.5})


def test_brute_force_shapley_on_permutations():
    # Shapley = average marginal contribution over all orderings (the textbook definition)
    paths = Paths.from_sequences([["A", "B"], ["B", "C"], ["A"], ["C", "A", "B"]], [2, 1, 3, 5], [1, 1, 1, 1])
    v = path_characteristic_function(paths)
    v[frozenset()] = 0.0
    perms = list(itertools.permutations("ABC"))
    brute = {p: 0.0 for p in "ABC"}
    for order in perms:
        seen: frozenset = frozenset()
        for p in order:
            brute[p] += (v[seen | {p}] - v[seen]) / len(perms)
            seen = seen | {p}
    assert shapley_values(v) == pytest.approx(brute, abs=1e-12)
