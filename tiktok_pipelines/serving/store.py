"""The serving directory: versions of a model that a server loads and hot-reloads.

A version bundles one export per embedding table (``embedding/export.py``) and, optionally, the
dense parameters. Layout under ``root``::

    v00000001/                  kind "full": every table as a snapshot, dense parameters
        manifest.json           format, seq, kind, base_seq, full_seq, created_at_s, tables,
                                dense, metadata, and the sha256 of every other file in the version
        tables/<slot>/...       an embedding export (its own manifest and Parquet files)
        dense.npz               named float arrays (numpy's .npz, read with allow_pickle=False)
    v00000002/                  kind "delta": base_seq 1; each table's touched rows and deletions
        ...                     since the previous version; dense.npz only on the dense cadence

The rules that make it safe (DESIGN.md decisions 4-6):

- **Atomic.** A version is written in ``.tmp-*``, fsynced, its manifest written last, then
  renamed to ``vNNNNNNNN``; a directory with that name is complete. A crash leaves at most a
  ``.tmp-*`` directory, which the next publisher removes.
- **Verified.** The manifest lists every file's sha256. ``load_latest`` refuses a version whose
  files do not match (a corrupted or truncated file) and falls back to the newest state it can
  verify.
- **A chain.** The state at seq s = the newest full version <= s + every delta after it, each
  delta's ``base_seq`` equal to the seq before it. A reader stops at the first gap.
- **One writer.** Publications, crash clean-up and retention run under ``writer_lock``, an flock
  on ``root/.writer.lock``. An online update holds it from reading the newest version to
  publishing the next: that is a read-modify-write, and two runs of it at once (the daemon
  launches runs concurrently) would both train the same window, or one would delete the other's
  ``.tmp-*`` as crash debris. The kernel drops the lock when its holder dies (kill -9).
- **Retention.** After each full version, all but the newest ``keep_full`` full versions, and
  the deltas based on them, are deleted: first renamed out of the ``vNNNNNNNN`` namespace (one
  atomic step per version), then removed. A reader that loses a race with retention retries.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tiktok_pipelines.embedding.admission import filter_from_state, filter_state, is_stateful
from tiktok_pipelines.embedding.export import apply_delta, export_delta, export_snapshot, load_snapshot
from tiktok_pipelines.embedding.table import CollisionlessEmbeddingTable
from tiktok_pipelines.lake import exclusive_lock, fsync_path, sha256_file

FORMAT = "tiktok_pipelines.serving/v1"
MANIFEST = "manifest.json"
DENSE_FILE = "dense.npz"
ADMISSION_FILE = "admission.npz"
_VERSION_RE = re.compile(r"^v(\d{8})$")
WRITER_LOCK = ".writer.lock"
_held = threading.local()  # the serving roots this thread holds the writer lock of


@contextmanager
def writer_lock(root: str | os.PathLike) -> Iterator[None]:
    """Hold the serving directory's writer lock for the block (see the module docstring).

    Re-entrant within a thread, so ``ServingPublisher`` can take it around each publication and
    a caller can hold it around a whole read-train-publish; an flock taken twice by one process
    on two open files would otherwise wait on itself."""
    key = str(Path(root).resolve())
    held = _held.__dict__.setdefault("roots", set())
    if key in held:
        yield
        return
    Path(root).mkdir(parents=True, exist_ok=True)
    with exclusive_lock(Path(root) / WRITER_LOCK):
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)


class CorruptVersion(ValueError):
    """A version whose files do not match its manifest."""


def version_dir(root: Path, seq: int) -> Path:
    return root / f"v{seq:08d}"


def list_versions(root: str | os.PathLike) -> list[int]:
    """Seqs of the published versions, ascending (temp and trashed directories excluded)."""
    root = Path(root)
    if not root.is_dir():
        return []
    seqs = [int(m.group(1)) for p in root.iterdir() if (m := _VERSION_RE.match(p.name))]
    return sorted(seqs)


def read_version_manifest(root: str | os.PathLike, seq: int) -> dict[str, Any]:
    manifest = json.loads((version_dir(Path(root), seq) / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise CorruptVersion(f"v{seq:08d}: unknown format {manifest.get('format')!r}")
    return manifest


def verify_version(root: str | os.PathLike, seq: int) -> dict[str, Any]:
    """The version's manifest, after checking every file it lists; CorruptVersion otherwise."""
    d = version_dir(Path(root), seq)
    try:
        manifest = read_version_manifest(root, seq)
    except (OSError, json.JSONDecodeError) as e:
        raise CorruptVersion(f"{d}: unreadable manifest ({e})") from e
    for rel, digest in manifest["files"].items():
        path = d / rel
        if not path.is_file() or sha256_file(path) != digest:
            raise CorruptVersion(f"{path}: missing or checksum mismatch")
    return manifest


# --- publishing -------------------------------------------------------------------------------


class ServingPublisher:
    """Publishes versions of a set of embedding tables (one per feature slot) and dense arrays.

    The tables must be the publisher's: a delta is the rows touched since the table's previous
    export, so every export of these tables must go through this publisher. After a failed
    publication the next one is a full version, because the failed attempt may already have
    consumed the tables' touched rows.
    """

    def __init__(self, root: str | os.PathLike, *, keep_full: int = 3) -> None:
        if keep_full < 1:
            raise ValueError("keep_full must be >= 1")
        self.root = Path(root)
        self.keep_full = keep_full
        self.root.mkdir(parents=True, exist_ok=True)
        self._needs_full = True
        self._base: int | None = None  # the version the tables' touched rows are relative to
        self.clean()

    def clean(self) -> None:
        """Remove what crashed publishers and interrupted retention left behind (under the writer
        lock: a ``.tmp-*`` of a publisher that is alive is not debris)."""
        with writer_lock(self.root):
            for p in self.root.iterdir():
                if p.name.startswith((".tmp-", ".trash-")):
                    shutil.rmtree(p, ignore_errors=True)

    def resume_from(self, seq: int) -> None:
        """The tables were just loaded from version ``seq`` of this directory (``load_latest``):
        their export seqs chain from it, so the next publication may be a delta."""
        if seq not in list_versions(self.root):
            raise ValueError(f"no version {seq} in {self.root}")
        self._needs_full = False
        self._base = seq

    def publish(self, tables: dict[str, CollisionlessEmbeddingTable], *, now_s: int,
                dense: dict[str, np.ndarray] | None = None, full: bool = False,
                metadata: dict[str, Any] | None = None,
                include_optimizer_state: bool = False) -> dict[str, Any]:
        """Publish the next version: a delta unless ``full`` (or the chain needs a full one).
        ``dense`` arrays are included when given (required in a full version).
        ``include_optimizer_state``: deltas also carry the touched rows' Adagrad state, so a
        trainer in another process can resume from the store exactly (twice the bytes)."""
        with writer_lock(self.root):
            return self._publish(tables, now_s=now_s, dense=dense, full=full, metadata=metadata,
                                 include_optimizer_state=include_optimizer_state)

    def _publish(self, tables: dict[str, CollisionlessEmbeddingTable], *, now_s: int,
                 dense: dict[str, np.ndarray] | None, full: bool, metadata: dict[str, Any] | None,
                 include_optimizer_state: bool) -> dict[str, Any]:
        versions = list_versions(self.root)
        prev = versions[-1] if versions else 0
        if not full and self._base is not None and prev != self._base:
            # A delta holds the rows touched since version _base: on top of another version it
            # would make a chain that reads as valid and is wrong.
            raise RuntimeError(f"version {prev} of {self.root} was published after this publisher's "
                               f"tables were loaded from version {self._base}: hold writer_lock "
                               "from reading the version to publishing the next")
        full = full or self._needs_full or prev == 0
        if full and dense is None:
            raise ValueError("a full version needs the dense parameters")
        seq = prev + 1
        if full:
            full_seq = seq
        else:
            full_seq = read_version_manifest(self.root, prev)["full_seq"]
        tmp = self.root / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            self._needs_full = True  # until this version is in place
            table_dirs = {}
            for slot, table in sorted(tables.items()):
                target = tmp / "tables" / slot
                if full:
                    export_snapshot(table, target, now_s=now_s)
                else:
                    export_delta(table, target, now_s=now_s, include_optimizer_state=include_optimizer_state)
                table_dirs[slot] = f"tables/{slot}"
            admission = _write_admission(tables, tmp / ADMISSION_FILE)
            if dense is not None:
                with open(tmp / DENSE_FILE, "wb") as f:
                    np.savez(f, **{k: np.asarray(v) for k, v in dense.items()})
                    f.flush()
                    os.fsync(f.fileno())
            files = {
                str(p.relative_to(tmp)): sha256_file(p)
                for p in sorted(tmp.rglob("*")) if p.is_file()
            }
            manifest = {
                "format": FORMAT,
                "seq": seq,
                "kind": "full" if full else "delta",
                "base_seq": None if full else prev,
                "full_seq": full_seq,
                "created_at_s": int(now_s),
                "published_at": time.time(),
                "tables": table_dirs,
                "dense": DENSE_FILE if dense is not None else None,
                # the admission filters' state as of this version (servers ignore it; a trainer
                # that restarts from serving state continues counting where the last one stopped)
                "admission": admission,
                "metadata": metadata or {},
                "files": files,
            }
            with open(tmp / MANIFEST, "wb") as f:
                f.write(json.dumps(manifest, indent=1, sort_keys=True).encode())
                f.flush()
                os.fsync(f.fileno())
            for d in sorted({p.parent for p in tmp.rglob("*")} | {tmp}):
                fsync_path(d)
            os.rename(tmp, version_dir(self.root, seq))  # the commit point
            fsync_path(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._needs_full = False
        self._base = seq
        if full:
            self._retain()
        return manifest

    def _retain(self) -> None:
        seqs = list_versions(self.root)
        fulls = [s for s in seqs if read_version_manifest(self.root, s)["kind"] == "full"]
        if len(fulls) <= self.keep_full:
            return
        oldest_kept = fulls[-self.keep_full]
        for s in seqs:
            if s >= oldest_kept:
                break
            # Out of the namespace in one atomic step, then removed: never a half-deleted vNNN.
            trash = self.root / f".trash-{s:08d}-{uuid.uuid4().hex}"
            os.rename(version_dir(self.root, s), trash)
            shutil.rmtree(trash, ignore_errors=True)
        fsync_path(self.root)


def _write_admission(tables: dict[str, CollisionlessEmbeddingTable], path: Path) -> dict[str, Any] | None:
    """The tables' stateful admission filters into one compressed npz (no pickle); their configs
    for the manifest. None when every table admits every id."""
    configs, arrays = {}, {}
    for slot, table in sorted(tables.items()):
        f = getattr(table, "admission", None)
        if not is_stateful(f):
            continue
        configs[slot], state = filter_state(f)
        arrays.update({f"{slot}/{k}": v for k, v in state.items()})
    if not configs:
        return None
    with open(path, "wb") as out:
        np.savez_compressed(out, **arrays)  # count sketches are mostly zeros
        out.flush()
        os.fsync(out.fileno())
    return {"file": path.name, "filters": configs}


def _attach_admission(tables: dict[str, CollisionlessEmbeddingTable], directory: Path,
                      admission: dict[str, Any] | None) -> None:
    if not admission:
        return
    with np.load(directory / admission["file"], allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for slot, config in admission["filters"].items():
        if slot in tables:
            own = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.split("/", 1)[0] == slot}
            tables[slot].admission = filter_from_state(config, own)


# --- reading ----------------------------------------------------------------------------------


@dataclass
class ServingState:
    seq: int
    full_seq: int
    tables: dict[str, CollisionlessEmbeddingTable]
    dense: dict[str, np.ndarray]
    metadata: dict[str, Any]
    skipped: list[str] = field(default_factory=list)  # versions refused, with the reason


def _load_dense(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k].copy() for k in z.files}


def load_latest(root: str | os.PathLike, *, after: int = 0, retries: int = 5) -> ServingState | None:
    """The newest consistent state: the newest verifiable full version, then every delta that
    chains from it. None if there is no usable version newer than ``after``."""
    root = Path(root)
    for attempt in range(retries):
        try:
            return _load_latest(root, after)
        except FileNotFoundError:
            # Retention removed a version between listing and reading it: list again.
            if attempt == retries - 1:
                raise
    return None


def _load_latest(root: Path, after: int) -> ServingState | None:
    seqs = list_versions(root)
    if not seqs or seqs[-1] <= after:
        # Nothing newer can exist: return before verifying and loading everything (a server polls
        # this every second; without the check each poll re-read and re-hashed the whole state).
        return None
    skipped: list[str] = []
    manifests: dict[int, dict[str, Any]] = {}
    for s in reversed(seqs):
        try:
            manifests[s] = verify_version(root, s)
        except CorruptVersion as e:
            skipped.append(str(e))
    fulls = [s for s in sorted(manifests) if manifests[s]["kind"] == "full"]
    for full_seq in reversed(fulls):
        m = manifests[full_seq]
        d = version_dir(root, full_seq)
        tables = {slot: load_snapshot(d / rel) for slot, rel in m["tables"].items()}
        dense = _load_dense(d / m["dense"])
        seq, metadata = full_seq, m["metadata"]
        admission = (d, m.get("admission"))
        for s in seqs:
            if s <= seq:
                continue
            dm = manifests.get(s)
            if dm is None or dm["kind"] != "delta" or dm["base_seq"] != seq or set(dm["tables"]) != set(tables):
                break  # a gap, a corrupt delta or the next full: the chain ends here
            dd = version_dir(root, s)
            for slot, rel in dm["tables"].items():
                apply_delta(tables[slot], dd / rel)
            if dm["dense"]:
                dense = _load_dense(dd / dm["dense"])
            seq, metadata = s, dm["metadata"]
            admission = (dd, dm.get("admission"))
        if seq <= after:
            return None
        _attach_admission(tables, *admission)
        return ServingState(seq=seq, full_seq=full_seq, tables=tables, dense=dense,
                            metadata=metadata, skipped=skipped)
    return None
