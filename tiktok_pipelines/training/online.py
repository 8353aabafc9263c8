"""Online micro-batch updates: new events -> the same training step -> a delta of touched rows.

The loop Monolith describes, on files:

1. The served state is the newest state of the serving directory (the last full version the
   batch retrain published, plus every delta since). The trainer's state is its own checkpoint
   (``training/checkpoint.py``: every row with its Adagrad state, the dense weights as trained and
   Adam's state), taken after each publication; it resumes from it when it matches the newest
   serving version, and from the serving state otherwise (after a batch retrain).
2. The examples come from the streaming joiner (``training/stream_join.py``), run first: the
   impressions whose label window its event-time watermark closed, labelled and sampled exactly as
   the batch join would, read from the Delta table ``stream_examples`` beside the lake's other
   tables (local folder or ``s3://`` bucket). The update trains on those with ``ts_ms > trained_through_ms`` that it has
   not trained on (``stream_seq`` in the serving metadata: the joiner's committed step), and
   publishes ``trained_through_ms = watermark - label_window - 1``: the joiner's steps tile event
   time, so every impression up to that instant has been trained on once (or arrived after its
   window closed and was counted late).
3. ``MonolithRanker.partial_fit`` runs over them in time order: the same step as the batch retrain.
4. Only the rows those steps touched are published, as a delta. The dense weights go out on a
   slower cadence (when ``dense_every_s`` of event time has passed since they last went out), as
   Monolith syncs dense parameters less often; between two, the trainer keeps learning them in
   its checkpoint. Every ``full_every`` versions a full one is published instead, so that a
   reader's chain (full version + deltas) stays short between two daily retrains.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from tiktok_pipelines.ingest.engine import INGEST_LOG_DIR, Lake
from tiktok_pipelines.serving.store import (
    DEFAULT_MAX_EXPIRE_FRACTION,
    ServingPublisher,
    ServingState,
    load_latest,
    writer_lock,
)
from tiktok_pipelines.training.checkpoint import load_checkpoint, save_checkpoint
from tiktok_pipelines.training.joiner import JoinerConfig
from tiktok_pipelines.training.stream_join import (
    MAX_CLOCK_SKEW_MS,
    StreamConfig,
    StreamReport,
    run_stream_join,
    stream_examples_after,
)
from tiktok_pipelines.training.torch_ranker import IncompatibleModel, MonolithRanker


@dataclass
class OnlineReport:
    examples: int
    base_seq: int | None
    published_seq: int | None
    rows_published: int
    dense_published: bool
    trained_through_ms: int | None
    seconds: float
    reason: str = ""
    resumed_from: str = ""  # "checkpoint" (the trainer's own state) or "serving" (a published version)
    joined: StreamReport | None = None  # what the streaming joiner did first (late counts, watermark)


def watermark_ms(lake_root: str | os.PathLike | Lake) -> int | None:
    """The newest flush time of any ingested file (the ingest log's committed version): events up
    to it have arrived. None before the first file with a flush time the ingest accepted."""
    log = (lake_root if isinstance(lake_root, Lake) else Lake(lake_root)).store.dataset(INGEST_LOG_DIR)
    if log is None:
        return None
    newest = pa.compute.max(log.to_table(columns=["flushed_at_ms"]).column("flushed_at_ms")).as_py()
    return None if newest is None else int(newest)


def ranker_from_state(state: ServingState) -> MonolithRanker:
    """The torch ranker as published: tables from the store, dense weights and standardisation
    from the dense arrays."""
    dim, hidden = MonolithRanker.shape_of(state.dense)
    model = MonolithRanker(dim=dim, hidden=hidden)
    model.embeddings.use_tables({slot: state.tables[slot] for slot in model.embeddings.tables})
    model.load_dense_state(state.dense)
    return model


def default_checkpoint_root(serving_root: str | os.PathLike) -> Path:
    """Where the trainer of a serving directory keeps its checkpoint: beside it, never in it
    (a server never reads training state). A serving root in a bucket has no "beside": pass a
    local ``checkpoint_root``."""
    if "://" in str(serving_root):
        raise ValueError(f"the serving root {serving_root} is not a local folder: pass checkpoint_root "
                         "(a local folder for the trainer's checkpoint)")
    serving = Path(serving_root)
    return serving.parent / f"{serving.name}_trainer"


def online_update(lake_root: str | os.PathLike | Lake, serving_root: str | os.PathLike, config: JoinerConfig,
                  *, dense_every_s: int = 600, full_every: int = 200, batch_size: int = 512, keep_full: int = 3,
                  checkpoint_root: str | os.PathLike | None = None,
                  stream: StreamConfig | None = None, max_expire_fraction: float = DEFAULT_MAX_EXPIRE_FRACTION,
                  allow_mass_expiry: bool = False, clock_skew_s: int = MAX_CLOCK_SKEW_MS // 1000) -> OnlineReport:
    """One online update. ``lake_root``: the lake's folder, its ``s3://`` URI, or a ``Lake`` (a
    store configured with an endpoint). Sparse rows are published every update; the dense weights when
    ``dense_every_s`` of event time has passed since they were last published. Every
    ``full_every`` versions since the last full one, the update is published as a full version
    instead of a delta: readers rebuild the state from the newest full version plus its deltas,
    so the chain must stay short however often updates run.

    The trainer resumes from its own checkpoint (``training/checkpoint.py``; default
    ``default_checkpoint_root(serving_root)``) when it was taken after the newest serving version,
    else from the serving state; it writes a new checkpoint after each publication.

    Holds the serving directory's writer lock throughout: it trains from the newest version and
    publishes the next, so two updates at once (two runs the daemon launched, a CLI run beside a
    sensor's) must take turns; the second then trains only what the first left.

    Expiry runs at each publication against event time: one that would evict more than
    ``max_expire_fraction`` of a table raises ``MassExpiry`` and publishes nothing, unless
    ``allow_mass_expiry`` (see ``ServingPublisher.check_expiry``). The streaming joiner's
    watermark never passes the wall clock + ``clock_skew_s`` (the ingest's future skew)."""
    with writer_lock(serving_root):
        return _online_update(lake_root, serving_root, config, dense_every_s=dense_every_s, full_every=full_every,
                              batch_size=batch_size, keep_full=keep_full, stream=stream,
                              max_expire_fraction=max_expire_fraction, allow_mass_expiry=allow_mass_expiry,
                              clock_skew_s=clock_skew_s,
                              checkpoint_root=Path(checkpoint_root or default_checkpoint_root(serving_root)))


def _online_update(lake_root, serving_root, config: JoinerConfig, *, dense_every_s: int, full_every: int,
                   batch_size: int, keep_full: int, checkpoint_root: Path, stream: StreamConfig | None,
                   max_expire_fraction: float, allow_mass_expiry: bool, clock_skew_s: int) -> OnlineReport:
    started = time.perf_counter()
    state = load_latest(serving_root)
    if state is None:
        return OnlineReport(0, None, None, 0, False, None, time.perf_counter() - started,
                            "no model in the serving directory yet (the batch retrain publishes the first)")
    # The streaming joiner first: it takes the batches committed since it last ran and emits the
    # impressions whose windows its watermark closed. Its steps tile event time, so "trained
    # through" stays one instant: every impression up to it was trained on, or arrived late.
    joined = run_stream_join(lake_root, config, stream, clock_skew_ms=clock_skew_s * 1000)
    through = int(state.metadata.get("trained_through_ms", 0))
    mark = joined.counts.watermark_ms
    closed = None if mark is None else mark - config.label_window_s * 1000 - 1
    if closed is None or closed <= through:
        return OnlineReport(0, state.seq, None, 0, False, through, time.perf_counter() - started,
                            "no impression has a closed label window since the last update", joined=joined)
    examples = stream_examples_after(lake_root, through, after_seq=state.metadata.get("stream_seq"))
    if examples is None or examples.num_rows == 0:
        return OnlineReport(0, state.seq, None, 0, False, through, time.perf_counter() - started,
                            "no new impressions", joined=joined)
    resumed = load_checkpoint(checkpoint_root, serving_seq=state.seq)
    try:
        # The checkpoint carries what the serving state lacks: dense weights as trained (not as
        # last published) and the dense optimizer's state. Without it (first update after a
        # batch retrain, or a crash between a publication and its checkpoint), start from serving.
        model = resumed[0] if resumed else ranker_from_state(state)
    except IncompatibleModel as e:
        # A serving directory written by an older release: the next batch retrain publishes a
        # full version of the current format, and online updates continue from it.
        return OnlineReport(0, state.seq, None, 0, False, through, time.perf_counter() - started,
                            f"the serving version is of another model format ({e}); waiting for the batch retrain",
                            joined=joined)
    model.partial_fit(examples, batch_size=batch_size)
    publisher = ServingPublisher(serving_root, keep_full=keep_full, max_expire_fraction=max_expire_fraction)
    publisher.resume_from(state.seq)
    full = state.seq - state.full_seq + 1 >= full_every
    trained_through = closed
    # The newest published dense weights were trained through dense_through_ms (a full version's
    # are its own trained_through_ms): the cadence runs on event time, not on a count of updates.
    dense_through = int(state.metadata.get("dense_through_ms", through))
    with_dense = full or trained_through - dense_through >= dense_every_s * 1000
    rows = sum(len(t.touched_rows()) for t in model.embeddings.tables.values())
    manifest = publisher.publish(
        model.embeddings.tables, now_s=trained_through // 1000,
        dense=model.dense_state() if with_dense else None, include_optimizer_state=True, full=full,
        allow_mass_expiry=allow_mass_expiry,
        metadata={**state.metadata, "trained_through_ms": trained_through,
                  "dense_through_ms": trained_through if with_dense else dense_through,
                  "stream_seq": joined.seq, "online_examples": examples.num_rows},
    )
    save_checkpoint(checkpoint_root, model, serving_seq=manifest["seq"],
                    metadata={"trained_through_ms": trained_through})
    return OnlineReport(examples.num_rows, state.seq, manifest["seq"], rows, with_dense, trained_through,
                        time.perf_counter() - started, resumed_from="checkpoint" if resumed else "serving",
                        joined=joined)
