"""Multi-touch attribution: journeys, rule-based models, exact Markov and Shapley (no Dagster).

- :mod:`.paths`: aggregated paths (CSR arrays) and the ChannelAttribution path file reader.
- :mod:`.rules`: first click, last click, linear, position-based 40/20/40, time decay.
- :mod:`.markov`: first-order Markov removal effects, exact (absorbing-chain linear algebra).
- :mod:`.shapley`: exact Shapley values for any game and for path data.
- :mod:`.models`: every timestamp-free model on paths (what the CLI prints).
- :mod:`.journeys`: touches + conversions -> journeys with click/view windows (DuckDB SQL).
- :mod:`.credits`: credits per model, channel, campaign and day from journeys.

See ``docs/attribution.md`` for the definitions and conventions.
"""

from tiktok_pipelines.attribution.markov import MarkovResult, markov_attribution
from tiktok_pipelines.attribution.models import (
    PATH_MODELS,
    PathAttribution,
    attribute_paths,
    rule_credits,
)
from tiktok_pipelines.attribution.paths import (
    PathFormatError,
    Paths,
    parse_paths,
    read_paths,
)
from tiktok_pipelines.attribution.rules import RULE_MODELS, rule_weights
from tiktok_pipelines.attribution.shapley import (
    MAX_EXACT_PLAYERS,
    path_characteristic_function,
    path_shapley,
    shapley_values,
)

__all__ = [
    "MAX_EXACT_PLAYERS", "PATH_MODELS", "RULE_MODELS", "MarkovResult", "PathAttribution", "PathFormatError",
    "Paths", "attribute_paths", "markov_attribution", "parse_paths", "path_characteristic_function",
    "path_shapley", "read_paths", "rule_credits", "rule_weights", "shapley_values",
]
