"""The online trainer's own checkpoint: training state, kept apart from what is served.

Monolith keeps a training parameter server and a serving one. Here the serving directory holds
what a server needs (embedding rows, and dense weights on their slower cadence); this checkpoint
holds everything the *trainer* needs to continue exactly where it stopped (DESIGN.md decision 11):

- every live row of every table: id, embedding, Adagrad accumulator, last update time, count,
  and the table's config and export seq (so the next serving delta chains from the version the
  checkpoint was taken after);
- the dense weights and the standardisation, as trained (not as last published);
- the dense optimizer's state (Adam's step, first and second moments per parameter).

One file, ``online_trainer.npz`` (numpy's format, read with ``allow_pickle=False``), written by
``atomic_write_bytes`` (temp file, fsync, rename): a crash leaves the previous checkpoint whole.
It is tied to one serving version (``serving_seq``): the online update takes it only when the
newest serving version is that one. After a batch retrain (a new full version) or a crash
between a publication and the checkpoint, it is stale, and the trainer starts from the serving
state instead, as it would on its first run.

The admission filters' state (count sketches) is in it too, so restarts never reset the counts.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tiktok_pipelines.embedding.admission import filter_from_state, filter_state, is_stateful
from tiktok_pipelines.embedding.table import CollisionlessEmbeddingTable, TableConfig
from tiktok_pipelines.publish import atomic_write_bytes
from tiktok_pipelines.training.torch_ranker import MonolithRanker

CHECKPOINT_FILE = "online_trainer.npz"
FORMAT = 1
_ROW_FIELDS = ("id", "embedding", "adagrad_accumulator", "last_update_s", "count")


def checkpoint_path(root: str | os.PathLike) -> Path:
    return Path(root) / CHECKPOINT_FILE


def save_checkpoint(root: str | os.PathLike, model: MonolithRanker, *, serving_seq: int,
                    metadata: dict[str, Any]) -> Path:
    """The trainer's whole state, taken right after it was published as ``serving_seq``."""
    arrays: dict[str, np.ndarray] = dict(model.dense_state())
    tables = {}
    for slot, table in model.embeddings.tables.items():
        if not isinstance(table, CollisionlessEmbeddingTable):
            raise TypeError(f"slot {slot!r}: only collisionless tables are checkpointed")
        for name, values in table.row_state(table.live_rows()).items():
            arrays[f"table.{slot}.{name}"] = values
        tables[slot] = {"config": table.config.to_dict(), "export_seq": table.export_seq}
        if is_stateful(table.admission):
            tables[slot]["admission"], state = filter_state(table.admission)
            arrays.update({f"admission.{slot}.{k}": v for k, v in state.items()})
    opt = model.optimizer.state_dict()
    for index, state in opt["state"].items():
        for name, value in state.items():
            arrays[f"adam.{index}.{name}"] = value.detach().numpy() if torch.is_tensor(value) else np.asarray(value)
    meta = {"format": FORMAT, "serving_seq": int(serving_seq), "dim": model.dim, "hidden": model.hidden,
            "examples_seen": model.examples_seen, "tables": tables,
            "adam_param_groups": opt["param_groups"], "metadata": metadata}
    arrays["meta_json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path = checkpoint_path(root)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_checkpoint(root: str | os.PathLike, *, serving_seq: int) -> tuple[MonolithRanker, dict] | None:
    """(model, checkpoint metadata) if the checkpoint was taken after ``serving_seq``; else None."""
    path = checkpoint_path(root)
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("meta_json").tobytes())
    if meta.get("format") != FORMAT or meta["serving_seq"] != serving_seq:
        return None
    model = MonolithRanker(dim=meta["dim"], hidden=meta["hidden"])
    tables = {}
    for slot, info in meta["tables"].items():
        rows = {name: arrays[f"table.{slot}.{name}"] for name in _ROW_FIELDS}
        config = TableConfig.from_dict({**info["config"], "initial_capacity": max(len(rows["id"]), 1)})
        table = CollisionlessEmbeddingTable(config, name=slot)
        table.upsert_rows(rows["id"], rows["embedding"], 0, accumulators=rows["adagrad_accumulator"],
                          last_update_s=rows["last_update_s"], counts=rows["count"])
        table.mark_exported(info["export_seq"])  # nothing touched since the serving version
        if info.get("admission"):
            prefix = f"admission.{slot}."
            table.admission = filter_from_state(info["admission"], {k[len(prefix):]: v for k, v in arrays.items()
                                                                     if k.startswith(prefix)})
        tables[slot] = table
    model.embeddings.use_tables(tables)
    model.load_dense_state(arrays)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in arrays.items():
        if key.startswith("adam."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = torch.from_numpy(value.copy())
    model.optimizer.load_state_dict({"state": state, "param_groups": meta["adam_param_groups"]})
    model.examples_seen = meta["examples_seen"]
    return model, meta["metadata"]
