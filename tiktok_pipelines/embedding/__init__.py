"""Monolith's collisionless embedding table as a plain library (no Dagster import).

Modules, one job each: ``cuckoo`` (id -> row map), ``storage`` (rows + Adagrad state),
``admission`` (count / probabilistic filters), ``expiry`` (TTL), ``table`` (the tables' API),
``hashing_trick`` (baseline), ``export`` (snapshots and deltas), ``torch_module`` (training).
See docs/embedding.md.
"""

from tiktok_pipelines.embedding.admission import (
    AdmitAll,
    CountFilter,
    ProbabilisticFilter,
    probability_for_expected_count,
)
from tiktok_pipelines.embedding.export import (
    apply_delta,
    export_delta,
    export_snapshot,
    load_snapshot,
    read_export,
)
from tiktok_pipelines.embedding.hashing_trick import (
    HashingTrickEmbeddingTable,
    collision_stats,
)
from tiktok_pipelines.embedding.table import (
    AdagradConfig,
    CollisionlessEmbeddingTable,
    TableConfig,
)

__all__ = [
    "AdagradConfig",
    "AdmitAll",
    "CollisionlessEmbeddingTable",
    "CountFilter",
    "HashingTrickEmbeddingTable",
    "ProbabilisticFilter",
    "TableConfig",
    "apply_delta",
    "collision_stats",
    "export_delta",
    "export_snapshot",
    "load_snapshot",
    "probability_for_expected_count",
    "read_export",
]
