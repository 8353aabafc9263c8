"""The simulated short-video platform (no Dagster import): entities with latent ground truth,
day-by-day activity, dirty/late/duplicate delivery, landing micro-batch files, catalog and truth.

Entry point: ``simulate(out_dir, SimulationConfig(...)) -> SimulationSummary`` (see ``core.py`` for the layout).
"""

# Resolved on first use (PEP 562), not at import: the code location imports only
# simulator.observed (the served definitions), and every Dagster run worker imports the location;
# the simulator proper (world, events, writers) is for the CLI and the benchmarks.
_LAZY = {
    "SimulationConfig": "core",
    "SimulationSummary": "core",
    "simulate": "core",
    "DEFAULT_DIRTY_WEIGHTS": "dirty",
    "DIRTY_KINDS": "dirty",
    "KINDS": "dirty",
    "expected_reason": "dirty",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"tiktok_pipelines.simulator.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEFAULT_DIRTY_WEIGHTS", "DIRTY_KINDS", "KINDS", "SimulationConfig", "SimulationSummary", "expected_reason",
           "simulate"]
