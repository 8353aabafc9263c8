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

import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
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
# A version may expire at most this share of a table's rows (``MassExpiry``; ``allow_mass_expiry``).
DEFAULT_MAX_EXPIRE_FRACTION = 0.2
_VERSION_RE = re.compile(r"^v(\d{8})$")
WRITER_LOCK = ".writer.lock"
log = logging.getLogger(__name__)
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


class MassExpiry(RuntimeError):
    """A publication whose expiry would delete more of a table than the publisher allows.

    Expiry runs against the publication's clock (``now_s``, event time). A clock far ahead (one
    event dated 2099 once moved it there) makes every row look idle: the version would delete
    every user and video, and every server would answer with nothing. A real expiry removes a
    little at a time; a large one must be asked for (``allow_mass_expiry``)."""


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
    """The version's manifest after the checks that need no hashing: the directory resolves
    inside ``root``, the manifest parses, has every field a reader uses, names its own seq, and
    lists only files inside the version. CorruptVersion otherwise (never a KeyError: a one-line
    manifest in an empty directory stopped every reader that way). Its ``manifest_sha256`` is
    the version's identity: a seq can be deleted and published again with other contents."""
    d = version_dir(Path(root), seq)
    real_root, real = Path(root).resolve(), d.resolve()
    if real.parent != real_root:
        # A symlink to a version somewhere else on the machine: what is served must be what
        # this directory's writer published.
        raise CorruptVersion(f"{d}: resolves outside the serving root ({real})")
    try:
        raw = (d / MANIFEST).read_bytes()
        manifest = json.loads(raw)
    except FileNotFoundError:
        if not d.exists():
            raise  # removed by retention meanwhile: the caller lists again
        raise CorruptVersion(f"{d}: no manifest") from None
    except (OSError, ValueError) as e:
        raise CorruptVersion(f"{d}: unreadable manifest ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        fmt = manifest.get("format") if isinstance(manifest, dict) else None
        raise CorruptVersion(f"{d}: unknown format {fmt!r}")
    _check_fields(d, seq, manifest)
    manifest["manifest_sha256"] = hashlib.sha256(raw).hexdigest()
    return manifest


def _check_fields(d: Path, seq: int, m: dict[str, Any]) -> None:
    def bad(why: str) -> CorruptVersion:
        return CorruptVersion(f"{d}: {why}")

    if m.get("seq") != seq:
        raise bad(f"the manifest names seq {m.get('seq')!r}")
    if m.get("kind") not in ("full", "delta"):
        raise bad(f"unknown kind {m.get('kind')!r}")
    if not isinstance(m.get("full_seq"), int) or not 0 < m["full_seq"] <= seq:
        raise bad(f"bad full_seq {m.get('full_seq')!r}")
    if m["kind"] == "delta" and (not isinstance(m.get("base_seq"), int) or not 0 < m["base_seq"] < seq):
        raise bad(f"bad base_seq {m.get('base_seq')!r}")
    files, tables = m.get("files"), m.get("tables")
    if not isinstance(files, dict) or not files or not all(isinstance(v, str) for v in files.values()):
        raise bad("no file list")
    if not isinstance(tables, dict) or not tables or not isinstance(m.get("metadata", {}), dict):
        raise bad("no tables")
    for rel in files:
        parts = PurePosixPath(rel).parts
        if not parts or PurePosixPath(rel).is_absolute() or ".." in parts or "\\" in rel:
            raise bad(f"lists a file outside the version: {rel!r}")
    for slot, rel in tables.items():
        if f"{rel}/manifest.json" not in files:
            raise bad(f"table {slot!r} is not in the file list")
    if m["kind"] == "full" and m.get("dense") is None:
        raise bad("a full version without dense parameters")
    if m.get("dense") is not None and m["dense"] not in files:
        raise bad("its dense file is not in the file list")


def _verify_files(root: Path, seq: int, manifest: dict[str, Any]) -> None:
    d = version_dir(root, seq)
    real = d.resolve()
    for rel, digest in manifest["files"].items():
        path = d / rel
        if real not in path.resolve().parents:
            raise CorruptVersion(f"{path}: resolves outside its version")
        if not path.is_file() or sha256_file(path) != digest:
            if not d.exists():
                raise FileNotFoundError(d)  # removed by retention meanwhile
            raise CorruptVersion(f"{path}: missing or checksum mismatch")


def verify_version(root: str | os.PathLike, seq: int) -> dict[str, Any]:
    """The version's manifest, after checking every file it lists; CorruptVersion otherwise."""
    manifest = read_version_manifest(root, seq)
    _verify_files(Path(root), seq, manifest)
    return manifest


# --- publishing -------------------------------------------------------------------------------


class ServingPublisher:
    """Publishes versions of a set of embedding tables (one per feature slot) and dense arrays.

    The tables must be the publisher's: a delta is the rows touched since the table's previous
    export, so every export of these tables must go through this publisher. After a failed
    publication the next one is a full version, because the failed attempt may already have
    consumed the tables' touched rows.
    """

    def __init__(self, root: str | os.PathLike, *, keep_full: int = 3,
                 max_expire_fraction: float = DEFAULT_MAX_EXPIRE_FRACTION) -> None:
        if keep_full < 1:
            raise ValueError("keep_full must be >= 1")
        if not 0 <= max_expire_fraction <= 1:
            raise ValueError("max_expire_fraction must be in [0, 1]")
        self.root = Path(root)
        self.keep_full = keep_full
        self.max_expire_fraction = max_expire_fraction
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
                include_optimizer_state: bool = False, allow_mass_expiry: bool = False) -> dict[str, Any]:
        """Publish the next version: a delta unless ``full`` (or the chain needs a full one).
        ``dense`` arrays are included when given (required in a full version).
        ``include_optimizer_state``: deltas also carry the touched rows' Adagrad state, so a
        trainer in another process can resume from the store exactly (twice the bytes).
        Raises ``MassExpiry``, before anything changes, when expiry at ``now_s`` would evict more
        than ``max_expire_fraction`` of a table's rows, unless ``allow_mass_expiry``."""
        if not allow_mass_expiry:
            self.check_expiry(tables, now_s)
        with writer_lock(self.root):
            return self._publish(tables, now_s=now_s, dense=dense, full=full, metadata=metadata,
                                 include_optimizer_state=include_optimizer_state)

    def _publish(self, tables: dict[str, CollisionlessEmbeddingTable], *, now_s: int,
                 dense: dict[str, np.ndarray] | None, full: bool, metadata: dict[str, Any] | None,
                 include_optimizer_state: bool) -> dict[str, Any]:
        self._set_aside_unservable()
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

    def check_expiry(self, tables: dict[str, CollisionlessEmbeddingTable], now_s: int) -> None:
        """MassExpiry if expiring at ``now_s`` would evict too much of any table (a dry run)."""
        over = {}
        for slot, table in sorted(tables.items()):
            n, live = table.expiring(now_s), len(table)
            if n and n > self.max_expire_fraction * live:
                over[slot] = f"{n} of {live} rows"
        if over:
            raise MassExpiry(
                f"publishing at {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(now_s))} UTC would expire {over} "
                f"(more than {self.max_expire_fraction:.0%} of a table in one version): is the clock it runs on "
                "(the newest event time) wrong? Publish with allow_mass_expiry=True if this is meant")

    def _set_aside_unservable(self) -> None:
        """Move newest versions that no reader could load out of the namespace, into
        ``.rejected-vNNNNNNNN-*`` (kept for a person to look at): a bogus newest directory (a
        one-line manifest, a truncated copy, a symlink elsewhere) would otherwise be the base
        every next publication is numbered and chained from, and every online update would fail.
        Under the writer lock nothing is mid-publication, so what does not verify now never will."""
        reader = ServingReader(self.root)
        chain = reader.head()
        served = chain.seq if chain else 0
        for s in reversed(list_versions(self.root)):
            if s <= served:
                break
            reason = reader.rejected.get(s, "does not chain from the newest loadable state")
            os.rename(version_dir(self.root, s), self.root / f".rejected-v{s:08d}-{uuid.uuid4().hex[:8]}")
            fsync_path(self.root)
            log.warning("serving version v%08d set aside as .rejected-*: %s", s, reason)
        if chain is not None and self._base is not None and self._base > served:
            self._needs_full, self._base = True, None  # what it was based on is gone

    def _retain(self) -> None:
        seqs = list_versions(self.root)
        fulls = []
        for s in seqs:
            try:
                if read_version_manifest(self.root, s)["kind"] == "full":
                    fulls.append(s)
            except CorruptVersion:
                pass  # an older broken version: retention removes it with the rest below
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
    # What was loaded: (seq, manifest sha256) of the full version and every delta applied. Two
    # states with the same seq are the same only if this is equal (a seq can be republished).
    identity: tuple[tuple[int, str], ...] = ()


def _load_dense(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k].copy() for k in z.files}


@dataclass(frozen=True)
class Chain:
    """A loadable state: a full version and the deltas that chain from it, all verified."""

    manifests: tuple[dict[str, Any], ...]  # the full version's first

    @property
    def seq(self) -> int:
        return self.manifests[-1]["seq"]

    @property
    def identity(self) -> tuple[tuple[int, str], ...]:
        return tuple((m["seq"], m["manifest_sha256"]) for m in self.manifests)


@dataclass
class _Entry:
    key: tuple  # what the entry was read from (see _stat_key); re-read when it changes
    manifest: dict[str, Any] | None  # None: rejected
    reason: str = ""
    verified: bool = False  # every file hashed and matched


def _stat_key(root: Path, seq: int) -> tuple | None:
    """Cheap fingerprint of a version directory and its manifest: a poll re-reads a version only
    when this changes, so an unchanged version is never hashed twice (a rejected one was hashed
    every second before, by every server). None: the directory is gone."""
    d = version_dir(root, seq)
    try:
        ds = os.lstat(d)
    except FileNotFoundError:
        return None
    try:
        ms = os.stat(d / MANIFEST)
        mkey = (ms.st_ino, ms.st_size, ms.st_mtime_ns)
    except OSError:
        mkey = None
    return (ds.st_ino, ds.st_mtime_ns, ds.st_mode, mkey)


class ServingReader:
    """A long-lived reader of one serving directory (the model server's): finds the newest state
    it can load and remembers what it verified and what it rejected.

    ``head()`` is cheap when nothing changed (a listing and a stat per version); a version is read
    and hashed once, when it appears or changes on disk. A version that fails its checks is
    remembered with the reason (``rejected``), logged once, and skipped: the reader falls back to
    the newest state that verifies, at start and while running.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self._entries: dict[int, _Entry] = {}
        self.newest_seq = 0  # the newest version directory at the last scan, loadable or not

    @property
    def rejected(self) -> dict[int, str]:
        """Versions present on disk that were refused, with the reason."""
        return {s: e.reason for s, e in sorted(self._entries.items()) if e.manifest is None}

    def _scan(self) -> list[int]:
        seqs = list_versions(self.root)
        self.newest_seq = seqs[-1] if seqs else 0
        for s in list(self._entries):
            if s not in seqs:
                del self._entries[s]
        for s in seqs:
            key = _stat_key(self.root, s)
            old = self._entries.get(s)
            if key is None:
                self._entries.pop(s, None)
                continue
            if old is not None and old.key == key:
                continue
            try:
                self._entries[s] = _Entry(key, read_version_manifest(self.root, s))
            except FileNotFoundError:
                self._entries.pop(s, None)  # removed by retention between listing and reading
            except CorruptVersion as e:
                self._reject(s, key, str(e))
        return [s for s in seqs if s in self._entries]

    def _reject(self, seq: int, key: tuple, reason: str) -> None:
        self._entries[seq] = _Entry(key, None, reason)
        log.warning("serving version v%08d rejected: %s", seq, reason)  # once: kept until it changes

    def _candidate(self, seqs: list[int]) -> list[int] | None:
        """The newest chain among versions not rejected: a full version and its deltas."""
        good = {s: self._entries[s].manifest for s in seqs if self._entries[s].manifest is not None}
        for full_seq in sorted((s for s, m in good.items() if m["kind"] == "full"), reverse=True):
            chain, tables = [full_seq], set(good[full_seq]["tables"])
            for s in sorted(good):
                if s <= full_seq:
                    continue
                m = good[s]
                if m["kind"] != "delta" or m["base_seq"] != chain[-1] or set(m["tables"]) != tables:
                    break  # a gap, a corrupt delta or the next full: the chain ends here
                chain.append(s)
            return chain
        return None

    def head(self) -> Chain | None:
        """The newest loadable state, every file of it verified (each version hashed once)."""
        while True:
            chain = self._candidate(self._scan())
            if chain is None:
                return None
            failed = False
            for s in chain:
                e = self._entries[s]
                if e.verified:
                    continue
                try:
                    _verify_files(self.root, s, e.manifest)
                except FileNotFoundError:
                    self._entries.pop(s, None)
                    failed = True
                    break
                except CorruptVersion as err:
                    self._reject(s, e.key, str(err))
                    failed = True
                    break
                e.verified = True
            if not failed:
                return Chain(tuple(self._entries[s].manifest for s in chain))

    def load(self, chain: Chain) -> ServingState:
        """Build the state a chain describes (FileNotFoundError if retention removed part of it)."""
        first = chain.manifests[0]
        d = version_dir(self.root, first["seq"])
        tables = {slot: load_snapshot(d / rel) for slot, rel in first["tables"].items()}
        dense = _load_dense(d / first["dense"])
        admission = (d, first.get("admission"))
        for m in chain.manifests[1:]:
            dd = version_dir(self.root, m["seq"])
            for slot, rel in m["tables"].items():
                apply_delta(tables[slot], dd / rel)
            if m["dense"]:
                dense = _load_dense(dd / m["dense"])
            admission = (dd, m.get("admission"))
        _attach_admission(tables, *admission)
        return ServingState(seq=chain.seq, full_seq=first["seq"], tables=tables, dense=dense,
                            metadata=chain.manifests[-1]["metadata"],
                            skipped=[f"v{s:08d}: {r}" for s, r in self.rejected.items()],
                            identity=chain.identity)


def load_latest(root: str | os.PathLike, *, after: int = 0, retries: int = 5) -> ServingState | None:
    """The newest consistent state: the newest verifiable full version, then every delta that
    chains from it. None if there is no usable version newer than ``after``. (A server polls
    with a ``ServingReader``, which remembers what it verified; this reads from scratch.)"""
    root = Path(root)
    for attempt in range(retries):
        seqs = list_versions(root)
        if not seqs or seqs[-1] <= after:
            return None  # nothing newer can exist: no verifying and loading everything
        reader = ServingReader(root)
        try:
            chain = reader.head()
            if chain is None or chain.seq <= after:
                return None
            return reader.load(chain)
        except FileNotFoundError:
            # Retention removed a version between listing and reading it: list again.
            if attempt == retries - 1:
                raise
    return None
