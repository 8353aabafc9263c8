"""The daily retrain in small, for tests of what comes after it (online updates, their faults)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from tiktok_pipelines.serving.store import ServingPublisher
from tiktok_pipelines.training.joiner import JoinerConfig, build_examples, examples_glob
from tiktok_pipelines.training.torch_ranker import MonolithRanker


def publish_batch_model(lake: Path, serving: Path, config: JoinerConfig, *,
                        admit_min_count: int | None = 2) -> tuple[MonolithRanker, int]:
    """Join every impression in the lake, train the torch ranker on all of them and publish it
    as a full version, as ``batch_rankers`` does (with its count filter: ids get rows at their
    second occurrence); returns the model and ``trained_through_ms`` (the online updates
    continue from there)."""
    build_examples(lake, config)
    examples = duckdb.sql(f"SELECT * FROM read_parquet({examples_glob(lake)}) ORDER BY ts_ms").to_arrow_table()
    model = MonolithRanker(dim=8, admit_min_count=admit_min_count)
    model.fit(examples)
    through = int(examples.column("ts_ms")[examples.num_rows - 1].as_py())
    ServingPublisher(serving).publish(model.embeddings.tables, now_s=through // 1000, dense=model.dense_state(),
                                      full=True, metadata={"trained_through_ms": through})
    return model, through
