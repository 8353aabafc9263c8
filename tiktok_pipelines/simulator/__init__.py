"""The simulated short-video platform (no Dagster import): entities with latent ground truth,
day-by-day activity, dirty/late/duplicate delivery, landing micro-batch files, catalog and truth.

Entry point: ``simulate(out_dir, ...) -> SimulationSummary`` (see ``core.py`` for the layout).
"""

from tiktok_pipelines.simulator.core import SimulationSummary, simulate
from tiktok_pipelines.simulator.dirty import (
    DEFAULT_DIRTY_WEIGHTS,
    DIRTY_KINDS,
    KINDS,
    expected_reason,
)

__all__ = ["DEFAULT_DIRTY_WEIGHTS", "DIRTY_KINDS", "KINDS", "SimulationSummary", "expected_reason", "simulate"]
