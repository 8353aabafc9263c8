"""Every model that needs no timestamps, on aggregated paths: credits per channel.

``attribute_paths`` runs first click, last click, linear, position-based (rule weights from
:mod:`.rules` applied to each path and multiplied by its conversions and value), Markov removal
effect (:mod:`.markov`) and Shapley (:mod:`.shapley`). Each model's conversion credits sum to the
paths' conversions and its value credits to their value; null (non-converting) journeys only
inform the Markov chain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from tiktok_pipelines.attribution.markov import MarkovResult, markov_attribution
from tiktok_pipelines.attribution.paths import Paths
from tiktok_pipelines.attribution.rules import rule_weights
from tiktok_pipelines.attribution.shapley import path_shapley

PATH_RULE_MODELS = ("first_click", "last_click", "linear", "position_based")
PATH_MODELS = PATH_RULE_MODELS + ("markov", "shapley")
# The CLI's (and ChannelAttribution users') short names for the same models.
SHORT_NAMES = {"first_click": "first", "last_click": "last", "linear": "linear",
               "position_based": "position", "markov": "markov", "shapley": "shapley"}


def rule_credits(paths: Paths, model: str) -> tuple[np.ndarray, np.ndarray]:
    """(conversions, value) per channel under a rule-based model, for aggregated paths."""
    k = len(paths.channels)
    w = rule_weights(model, paths.offsets)
    path = paths.path_of_touch
    conv = np.bincount(paths.touches, weights=w * paths.conversions[path], minlength=k)
    value = np.bincount(paths.touches, weights=w * paths.value[path], minlength=k)
    return conv, value


@dataclass(frozen=True)
class PathAttribution:
    channels: tuple[str, ...]
    conversions: dict[str, np.ndarray]  # model -> credited conversions per channel
    value: dict[str, np.ndarray]  # model -> credited value per channel
    markov: MarkovResult
    total_conversions: float
    total_value: float

    def frame(self) -> pl.DataFrame:
        """One row per channel: ``<short model>`` conversion credits, ``<short model>_value`` value
        credits, and the Markov removal effects."""
        cols: dict[str, object] = {"channel": list(self.channels)}
        for m in PATH_MODELS:
            cols[SHORT_NAMES[m]] = self.conversions[m]
            if m == "markov":
                cols["markov_removal_effect"] = self.markov.removal_effect
        for m in PATH_MODELS:
            cols[f"{SHORT_NAMES[m]}_value"] = self.value[m]
        cols["markov_removal_effect_value"] = self.markov.removal_effect_value
        return pl.DataFrame(cols)

    def summary(self) -> dict[str, object]:
        """The CLI's JSON: per channel, conversion credits of every model and the removal effect."""
        channels = {}
        for i, c in enumerate(self.channels):
            row = {SHORT_NAMES[m]: float(self.conversions[m][i]) for m in PATH_RULE_MODELS}
            row["markov"] = float(self.conversions["markov"][i])
            row["markov_removal_effect"] = float(self.markov.removal_effect[i])
            row["shapley"] = float(self.conversions["shapley"][i])
            channels[c] = row
        return {"channels": channels, "total_conversions": self.total_conversions}


def attribute_paths(paths: Paths) -> PathAttribution:
    conv: dict[str, np.ndarray] = {}
    value: dict[str, np.ndarray] = {}
    for m in PATH_RULE_MODELS:
        conv[m], value[m] = rule_credits(paths, m)
    mk = markov_attribution(paths)
    conv["markov"], value["markov"] = mk.conversions, mk.value
    conv["shapley"], value["shapley"] = path_shapley(paths)
    return PathAttribution(paths.channels, conv, value, mk, paths.total_conversions, paths.total_value)
