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
  renamed to ``vNNNNNNNN``, never over one (``publish.finish_dir``, ``publish.rename_noreplace``);
  a directory with that name is complete. A crash leaves at most a ``.tmp-*`` directory, which
  the next publisher removes.
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

**On object storage** (a root ``s3://bucket/prefix``, or an ``S3Root`` with an explicit endpoint,
region and cache folder; layout in ``objectstore.py``) the same versions, built the same way:

- A publisher builds the version in a local temp folder exactly as above, uploads its files under
  keys no other publication uses (``vNNNNNNNN/<token>/...``, the token named in the manifest's
  ``objects``), then puts the manifest last, with a conditional put (``If-None-Match: *``): that
  put is the commit point. Of two publishers of one seq exactly one manifest lands; the other
  gets ``VersionConflict`` and its objects are orphans (deleted by it, else by the next clean-up).
  ``writer_lock`` is then only a courtesy between the processes of one host (an flock in the local
  cache folder): correctness between hosts comes from the conditional put alone.
- Retention and setting aside make a version invisible by deleting its manifest first, then its
  objects. A version's objects without a manifest are invisible to every reader.
- A reader lists the manifests (one LIST per poll), downloads each version of the chain it needs
  into its local cache folder (a ``.dl-*`` folder, renamed into place: the local protocol), and
  verifies the sha256s there as above; versions deleted remotely are dropped from the cache.
"""

from __future__ import annotations

import errno
import functools
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
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from tiktok_pipelines.embedding.admission import filter_from_state, filter_state, is_stateful
from tiktok_pipelines.embedding.export import apply_delta, export_delta, export_snapshot, load_snapshot
from tiktok_pipelines.embedding.table import CollisionlessEmbeddingTable
from tiktok_pipelines.lake import exclusive_lock
from tiktok_pipelines.publish import file_sha256s, finish_dir, fsync_path, rename_noreplace, sha256_file
from tiktok_pipelines.serving.objectstore import TOKEN_RE, S3Root, default_cache_base

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
# Objects of a publication on object storage that has no manifest yet may belong to a publisher
# still uploading: the clean-up leaves them this long (unless the seq is already decided).
ORPHAN_GRACE_S = 3600
TRANSFER_THREADS = 8  # parallel uploads/downloads of a version's files (each a small request)
Root = str | os.PathLike | S3Root


def location(root: Root, cache_base: str | os.PathLike | None = None) -> Path | S3Root:
    """A serving root as the store handles it: a local folder, or an ``S3Root`` for
    ``s3://bucket/prefix`` (endpoint and region from the AWS environment; pass an ``S3Root`` to
    give them, or another cache folder, explicitly). ``cache_base``: the folder its local copies
    go under (``default_cache_base``)."""
    if isinstance(root, S3Root):
        return root
    text = os.fspath(root)
    if text.startswith("s3://"):
        return _s3_root(text.rstrip("/"), os.environ.get("AWS_ENDPOINT_URL") or None,
                        os.environ.get("AWS_REGION") or None, str(default_cache_base(cache_base)))
    if "://" in text:
        raise ValueError(f"unsupported serving location {text!r}: a local path or s3://bucket/prefix")
    return Path(root)


@functools.lru_cache(maxsize=64)
def _s3_root(uri: str, endpoint_url: str | None, region: str | None, cache_base: str) -> S3Root:
    # One S3Root (one boto3 client, ~50 ms to build) per URI and environment, not one per call.
    return S3Root(uri, endpoint_url=endpoint_url, region=region, cache_base=cache_base)


@contextmanager
def writer_lock(root: Root) -> Iterator[None]:
    """Hold the serving directory's writer lock for the block (see the module docstring).

    Re-entrant within a thread, so ``ServingPublisher`` can take it around each publication and
    a caller can hold it around a whole read-train-publish; an flock taken twice by one process
    on two open files would otherwise wait on itself.

    On object storage the lock is an flock in the root's local cache folder: it orders the
    writers of one host; writers on two hosts are ordered by the manifest's conditional put."""
    loc = location(root)
    folder = loc.cache_dir if isinstance(loc, S3Root) else loc
    key = str(folder.resolve())  # the lock is the flock of this folder's lock file
    held = _held.__dict__.setdefault("roots", set())
    if key in held:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(folder / WRITER_LOCK):
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)


class CorruptVersion(ValueError):
    """A version whose files do not match its manifest."""


class VersionConflict(RuntimeError):
    """Another publisher committed this seq first (its manifest is in place): nothing of this
    publication is visible. Load the newest state and publish again."""

    def __init__(self, seq: int, root: object) -> None:
        super().__init__(f"version {seq} of {root} was published by another publisher meanwhile "
                         "(the manifest's conditional put lost): nothing of this publication is visible")
        self.seq = seq


class MassExpiry(RuntimeError):
    """A publication whose expiry would delete more of a table than the publisher allows.

    Expiry runs against the publication's clock (``now_s``, event time). A clock far ahead (one
    event dated 2099 once moved it there) makes every row look idle: the version would delete
    every user and video, and every server would answer with nothing. A real expiry removes a
    little at a time; a large one must be asked for (``allow_mass_expiry``)."""


def version_dir(root: Path, seq: int) -> Path:
    return root / f"v{seq:08d}"


def list_versions(root: Root) -> list[int]:
    """Seqs of the published versions, ascending (temp and trashed directories excluded; on
    object storage: the versions whose manifest is in place)."""
    root = location(root)
    if isinstance(root, S3Root):
        return sorted(root.list_manifests())
    if not root.is_dir():
        return []
    seqs = [int(m.group(1)) for p in root.iterdir() if (m := _VERSION_RE.match(p.name))]
    return sorted(seqs)


def read_version_manifest(root: Root, seq: int) -> dict[str, Any]:
    """The version's manifest after the checks that need no hashing: the directory resolves
    inside ``root``, the manifest parses, has every field a reader uses, names its own seq, and
    lists only files inside the version. CorruptVersion otherwise (never a KeyError: a one-line
    manifest in an empty directory stopped every reader that way). Its ``manifest_sha256`` is
    the version's identity: a seq can be deleted and published again with other contents."""
    if isinstance(loc := location(root), S3Root):
        return _read_remote_manifest(loc, seq)[0]
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
    return _checked_manifest(d, seq, raw, manifest)


def _checked_manifest(d: object, seq: int, raw: bytes, manifest: Any) -> dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        fmt = manifest.get("format") if isinstance(manifest, dict) else None
        raise CorruptVersion(f"{d}: unknown format {fmt!r}")
    _check_fields(d, seq, manifest)
    manifest["manifest_sha256"] = hashlib.sha256(raw).hexdigest()
    return manifest


def _read_remote_manifest(loc: S3Root, seq: int) -> tuple[dict[str, Any], bytes]:
    """A version's manifest on object storage (checked as ``read_version_manifest`` checks a
    local one, and its ``objects`` token too) and its raw bytes. FileNotFoundError: deleted."""
    where = f"{loc.uri}/v{seq:08d}"
    raw = loc.get(loc.manifest_key(seq))
    try:
        manifest = json.loads(raw)
    except ValueError as e:
        raise CorruptVersion(f"{where}: unreadable manifest ({e})") from e
    manifest = _checked_manifest(where, seq, raw, manifest)
    if not isinstance(manifest.get("objects"), str) or not TOKEN_RE.match(manifest["objects"]):
        # the token becomes part of every key read: only 32 hex digits, never a path
        raise CorruptVersion(f"{where}: no valid objects token ({manifest.get('objects')!r})")
    return manifest, raw


def _check_fields(d: object, seq: int, m: dict[str, Any]) -> None:
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


def verify_version(root: Root, seq: int) -> dict[str, Any]:
    """The version's manifest, after checking every file it lists; CorruptVersion otherwise
    (on object storage: after downloading it into the cache folder)."""
    loc = location(root)
    if isinstance(loc, S3Root):
        source = _RemoteSource(loc)
        manifest = source.manifest(seq)
        source.fetch(seq, manifest)
        return manifest
    manifest = read_version_manifest(loc, seq)
    _verify_files(loc, seq, manifest)
    return manifest


# --- publishing -------------------------------------------------------------------------------


@dataclass
class PreparedVersion:
    """A version built in a local temp folder, not visible yet (``ServingPublisher.prepare``)."""

    seq: int
    manifest: dict[str, Any]
    folder: Path  # the temp folder holding it, manifest included
    raw_manifest: bytes


class ServingPublisher:
    """Publishes versions of a set of embedding tables (one per feature slot) and dense arrays.

    The tables must be the publisher's: a delta is the rows touched since the table's previous
    export, so every export of these tables must go through this publisher. After a failed
    publication the next one is a full version, because the failed attempt may already have
    consumed the tables' touched rows.

    ``root``: a local folder, ``s3://bucket/prefix`` or an ``S3Root`` (module docstring).
    """

    def __init__(self, root: Root, *, keep_full: int = 3,
                 max_expire_fraction: float = DEFAULT_MAX_EXPIRE_FRACTION,
                 orphan_grace_s: float = ORPHAN_GRACE_S) -> None:
        if keep_full < 1:
            raise ValueError("keep_full must be >= 1")
        if not 0 <= max_expire_fraction <= 1:
            raise ValueError("max_expire_fraction must be in [0, 1]")
        self.root = location(root)
        self.remote = isinstance(self.root, S3Root)
        self.keep_full = keep_full
        self.max_expire_fraction = max_expire_fraction
        self.orphan_grace_s = orphan_grace_s
        # Where versions are built: in the root itself (renamed into place), or in the local
        # cache folder of an object-storage root (uploaded, then kept there as the cached copy).
        self._staging = self.root.cache_dir if self.remote else self.root
        self._staging.mkdir(parents=True, exist_ok=True)
        self._needs_full = True
        self._base: int | None = None  # the version the tables' touched rows are relative to
        self.clean()

    def clean(self) -> None:
        """Remove what crashed publishers and interrupted retention left behind (under the writer
        lock: a ``.tmp-*`` of a publisher that is alive is not debris). On object storage also
        the orphan objects: those of a seq whose manifest names another publication's token,
        and those without a manifest below the newest version or older than ``orphan_grace_s``
        (younger ones above it may be a live publisher's upload on another host)."""
        with writer_lock(self.root):
            for p in self._staging.iterdir():
                if p.name.startswith((".tmp-", ".trash-")):
                    shutil.rmtree(p, ignore_errors=True)
            if self.remote:
                _remove_orphans(self.root, self.orphan_grace_s)

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
        than ``max_expire_fraction`` of a table's rows, unless ``allow_mass_expiry``; and
        ``VersionConflict`` when another publisher committed the same seq first (object storage,
        where writers on other hosts do not take the lock)."""
        if not allow_mass_expiry:
            self.check_expiry(tables, now_s)
        with writer_lock(self.root):
            self._set_aside_unservable()
            prepared = self.prepare(tables, now_s=now_s, dense=dense, full=full, metadata=metadata,
                                    include_optimizer_state=include_optimizer_state)
            return self.commit(prepared)

    def prepare(self, tables: dict[str, CollisionlessEmbeddingTable], *, now_s: int,
                dense: dict[str, np.ndarray] | None = None, full: bool = False,
                metadata: dict[str, Any] | None = None,
                include_optimizer_state: bool = False) -> PreparedVersion:
        """Build the next version in a temp folder; nothing is visible until ``commit``. (The
        first half of ``publish``, which holds the writer lock around both: on a local root a
        caller that uses them alone must too, or another publisher's clean-up removes the folder.)"""
        versions = list_versions(self.root)
        prev = versions[-1] if versions else 0
        full = full or self._needs_full or prev == 0
        if not full and self._base is not None and prev != self._base:
            # A delta holds the rows touched since version _base: on top of another version it
            # would make a chain that reads as valid and is wrong. (A full version needs no base.)
            raise RuntimeError(f"version {prev} of {self.root} was published after this publisher's "
                               f"tables were loaded from version {self._base}: hold writer_lock "
                               "from reading the version to publishing the next")
        if full and dense is None:
            raise ValueError("a full version needs the dense parameters")
        seq = prev + 1
        if full:
            full_seq = seq
        else:
            full_seq = read_version_manifest(self.root, prev)["full_seq"]
        tmp = self._staging / f".tmp-{uuid.uuid4().hex}"
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
            files = file_sha256s(tmp)
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
            if self.remote:
                # the key prefix of this publication's objects: no other publication writes under it
                manifest["objects"] = uuid.uuid4().hex
            raw = json.dumps(manifest, indent=1, sort_keys=True).encode()
            finish_dir(tmp, MANIFEST, raw)  # every file and folder fsynced, the manifest last
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return PreparedVersion(seq, manifest, tmp, raw)

    def commit(self, prepared: PreparedVersion) -> dict[str, Any]:
        """Make a prepared version visible: rename it into place (local), or upload its files and
        put its manifest with a conditional put (object storage). ``VersionConflict`` if its seq
        was committed by another publisher meanwhile; the temp folder is gone either way."""
        seq, manifest = prepared.seq, prepared.manifest
        try:
            if self.remote:
                _upload_version(self.root, prepared)
                try:
                    # the uploaded folder is this host's cached copy: its readers need not download it
                    _install_cached(self.root.cache_dir, prepared.folder, seq)
                except OSError:  # published all the same: readers download it
                    log.warning("v%08d published; keeping a cached copy failed", seq, exc_info=True)
            else:
                try:
                    rename_noreplace(prepared.folder, version_dir(self.root, seq))  # the commit point
                except OSError as e:
                    if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                        raise VersionConflict(seq, self.root) from e
                    raise
                fsync_path(self.root)
        finally:
            shutil.rmtree(prepared.folder, ignore_errors=True)
        self._needs_full = False
        self._base = seq
        if manifest["kind"] == "full":
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
        ``.rejected-vNNNNNNNN-*`` (kept for a person to look at; on object storage the manifest
        is copied to ``rejected/`` and deleted, its objects become orphans): a bogus newest
        version (a one-line manifest, a truncated copy, a symlink elsewhere) would otherwise be
        the base every next publication is numbered and chained from, and every online update
        would fail. A visible version is complete (its manifest came last), so what does not
        verify now never will."""
        reader = ServingReader(self.root)
        chain = reader.head()
        served = chain.seq if chain else 0
        for s in reversed(list_versions(self.root)):
            if s <= served:
                break
            reason = reader.rejected.get(s, "does not chain from the newest loadable state")
            if self.remote:
                _set_aside_remote(self.root, s)
            else:
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
            except FileNotFoundError:
                pass  # removed meanwhile (object storage: another host's retention)
        if len(fulls) <= self.keep_full:
            return
        oldest_kept = fulls[-self.keep_full]
        for s in seqs:
            if s >= oldest_kept:
                break
            if self.remote:
                # The manifest first: the version is invisible before any of its objects goes.
                self.root.delete([self.root.manifest_key(s)])
                self.root.delete_prefix(f"v{s:08d}/")
                _drop_cached(self.root.cache_dir, s)
                continue
            # Out of the namespace in one atomic step, then removed: never a half-deleted vNNN.
            trash = self.root / f".trash-{s:08d}-{uuid.uuid4().hex}"
            os.rename(version_dir(self.root, s), trash)
            shutil.rmtree(trash, ignore_errors=True)
        if self.remote:
            _remove_orphans(self.root, self.orphan_grace_s)
        else:
            fsync_path(self.root)


# --- object storage: upload, cache, clean-up -------------------------------------------------


def _transfer(fn, items: list) -> None:
    """``fn`` over ``items`` on a few threads (a version is tens of small objects: one request
    each, latency-bound); the first error is raised."""
    if len(items) <= 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(min(TRANSFER_THREADS, len(items))) as pool:
        for _ in pool.map(fn, items):
            pass


def _upload_version(loc: S3Root, prepared: PreparedVersion) -> None:
    seq, token = prepared.seq, prepared.manifest["objects"]
    rels = sorted(prepared.manifest["files"])
    _transfer(lambda rel: loc.upload(prepared.folder / rel, loc.data_key(seq, token, rel)), rels)
    if not loc.put_if_absent(loc.manifest_key(seq), prepared.raw_manifest):  # the commit point
        try:
            loc.delete([loc.data_key(seq, token, rel) for rel in rels])
        except Exception:  # orphans then: the next clean-up deletes them (the seq is decided)
            log.warning("could not delete the objects of a lost publication of v%08d", seq, exc_info=True)
        raise VersionConflict(seq, loc.uri)


def _set_aside_remote(loc: S3Root, seq: int) -> None:
    try:
        raw = loc.get(loc.manifest_key(seq))
    except FileNotFoundError:
        return
    loc.put(loc.key(f"rejected/v{seq:08d}-{uuid.uuid4().hex[:8]}.json"), raw)
    loc.delete([loc.manifest_key(seq)])
    _drop_cached(loc.cache_dir, seq)


def _remove_orphans(loc: S3Root, grace_s: float) -> int:
    """Delete objects no manifest will ever name (``ServingPublisher.clean``); how many."""
    manifests = loc.list_manifests()
    newest = max(manifests, default=0)
    by_seq: dict[int, dict[str, list]] = {}
    for seq, token, key, modified in loc.list_data():
        by_seq.setdefault(seq, {}).setdefault(token, []).append((key, modified.timestamp()))
    now, doomed = time.time(), []
    for seq, tokens in by_seq.items():
        if seq in manifests:
            if len(tokens) == 1:
                continue  # the usual case: only the winner's objects (no manifest read needed)
            try:
                keep = _read_remote_manifest(loc, seq)[0]["objects"]
            except (FileNotFoundError, CorruptVersion):
                continue  # deleted meanwhile, or a broken one: the next clean-up decides
            doomed += [key for token, objs in tokens.items() if token != keep for key, _ in objs]
        else:
            for objs in tokens.values():
                if seq < newest or all(now - t > grace_s for _, t in objs):
                    doomed += [key for key, _ in objs]
    if doomed:
        loc.delete(doomed)
        log.info("removed %d orphan objects from %s", len(doomed), loc.uri)
    return len(doomed)


def _drop_cached(cache: Path, seq: int) -> None:
    """Remove a version's cached copy: renamed out of the namespace first, as retention does."""
    d = version_dir(cache, seq)
    trash = cache / f".trash-{seq:08d}-{uuid.uuid4().hex}"
    try:
        os.rename(d, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _install_cached(cache: Path, folder: Path, seq: int) -> None:
    """Rename a complete version folder into the cache as ``vNNNNNNNN`` (replacing an older copy
    of that seq). Another process of the host may have installed the same version first: fine."""
    d = version_dir(cache, seq)
    if d.exists():
        _drop_cached(cache, seq)
    try:
        os.rename(folder, d)
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise


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
        np.savez_compressed(out, **arrays)  # count sketches are mostly zeros (fsynced by finish_dir)
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


class _LocalSource:
    """The versions of a local serving directory, read in place."""

    def __init__(self, root: Path) -> None:
        self.root = self.files_root = root

    def list(self) -> list[int]:
        return list_versions(self.root)

    def key(self, seq: int) -> tuple | None:
        return _stat_key(self.root, seq)

    def manifest(self, seq: int) -> dict[str, Any]:
        return read_version_manifest(self.root, seq)

    def fetch(self, seq: int, manifest: dict[str, Any]) -> None:
        _verify_files(self.root, seq, manifest)


class _RemoteSource:
    """The versions of a serving root on object storage, copied into its local cache folder to be
    verified and read there (the local protocol: a ``.dl-*`` folder renamed into place). A cached
    copy is the version when its manifest's bytes are the remote manifest's (same sha256)."""

    def __init__(self, loc: S3Root) -> None:
        self.loc, self.files_root = loc, loc.cache_dir
        self._listed: dict[int, str] = {}  # seq -> the manifest's ETag, at the last listing
        self._raw: dict[tuple[int, str], bytes] = {}  # (seq, manifest sha256) -> its bytes

    def list(self) -> list[int]:
        self._listed = self.loc.list_manifests()
        self._prune()
        return sorted(self._listed)

    def key(self, seq: int) -> tuple | None:
        etag = self._listed.get(seq)
        return None if etag is None else ("s3", etag)

    def manifest(self, seq: int) -> dict[str, Any]:
        manifest, raw = _read_remote_manifest(self.loc, seq)
        self._raw = {k: v for k, v in self._raw.items() if k[0] != seq}
        self._raw[(seq, manifest["manifest_sha256"])] = raw
        return manifest

    def fetch(self, seq: int, manifest: dict[str, Any]) -> None:
        fresh = self._download(seq, manifest)
        try:
            _verify_files(self.files_root, seq, manifest)
        except CorruptVersion:
            if fresh:
                raise
            # The cached copy went bad (a disk, a person): fetch it again once before refusing.
            _drop_cached(self.files_root, seq)
            self._download(seq, manifest)
            _verify_files(self.files_root, seq, manifest)

    def _download(self, seq: int, manifest: dict[str, Any]) -> bool:
        """Ensure the cache holds this version (True if it was downloaded now)."""
        cache, sha = self.files_root, manifest["manifest_sha256"]
        cached = version_dir(cache, seq) / MANIFEST
        try:
            if hashlib.sha256(cached.read_bytes()).hexdigest() == sha:
                return False
        except OSError:
            pass
        raw = self._raw.get((seq, sha))
        if raw is None:
            manifest, raw = _read_remote_manifest(self.loc, seq)
            if manifest["manifest_sha256"] != sha:
                raise FileNotFoundError(f"{self.loc.uri}: v{seq:08d} was republished meanwhile")
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f".dl-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            token = manifest["objects"]

            def get(rel: str) -> None:
                try:
                    self.loc.download(self.loc.data_key(seq, token, rel), tmp / rel)
                except FileNotFoundError:
                    if seq not in self.loc.list_manifests():
                        raise  # retention removed the version meanwhile: the caller lists again
                    raise CorruptVersion(f"{self.loc.uri}/v{seq:08d}: object {rel!r} is missing") from None

            _transfer(get, sorted(manifest["files"]))
            (tmp / MANIFEST).write_bytes(raw)
            _install_cached(cache, tmp, seq)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return True

    def _prune(self) -> None:
        """Drop cached versions no longer published (deleted remotely or set aside), and the
        leftovers of downloads a killed process began more than an hour ago. Versions above the
        newest listed stay: a publisher of this host may have just committed and cached one."""
        try:
            children = list(self.files_root.iterdir())
        except FileNotFoundError:
            return
        newest = max(self._listed, default=0)
        for p in children:
            m = _VERSION_RE.match(p.name)
            if m and int(m.group(1)) not in self._listed and int(m.group(1)) < newest:
                _drop_cached(self.files_root, int(m.group(1)))
            elif p.name.startswith((".dl-", ".trash-")):
                try:
                    if time.time() - p.stat().st_mtime > 3600:
                        shutil.rmtree(p, ignore_errors=True)
                except FileNotFoundError:
                    pass


class ServingReader:
    """A long-lived reader of one serving directory (the model server's): finds the newest state
    it can load and remembers what it verified and what it rejected.

    ``head()`` is cheap when nothing changed (a listing and a stat per version); a version is read
    and hashed once, when it appears or changes on disk. A version that fails its checks is
    remembered with the reason (``rejected``), logged once, and skipped: the reader falls back to
    the newest state that verifies, at start and while running.

    On object storage (``root`` ``s3://...`` or an ``S3Root``) a poll is one LIST of the
    manifests; a version is downloaded into the cache folder (``files_root``) when it is part of
    the chain to load, then verified and read there exactly as a local one.
    """

    def __init__(self, root: Root) -> None:
        self.root = location(root)
        self._source = (_RemoteSource(self.root) if isinstance(self.root, S3Root)
                        else _LocalSource(self.root))
        self.files_root: Path = self._source.files_root  # where the versions' files are read
        self.location = str(self.root)  # what it reads: the folder, or the s3:// URI
        self._entries: dict[int, _Entry] = {}
        self.newest_seq = 0  # the newest version directory at the last scan, loadable or not

    @property
    def rejected(self) -> dict[int, str]:
        """Versions present on disk that were refused, with the reason."""
        return {s: e.reason for s, e in sorted(self._entries.items()) if e.manifest is None}

    def _scan(self) -> list[int]:
        seqs = self._source.list()
        self.newest_seq = seqs[-1] if seqs else 0
        for s in list(self._entries):
            if s not in seqs:
                del self._entries[s]
        for s in seqs:
            key = self._source.key(s)
            old = self._entries.get(s)
            if key is None:
                self._entries.pop(s, None)
                continue
            if old is not None and old.key == key:
                continue
            try:
                self._entries[s] = _Entry(key, self._source.manifest(s))
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
                    self._source.fetch(s, e.manifest)
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
        d = version_dir(self.files_root, first["seq"])
        tables = {slot: load_snapshot(d / rel) for slot, rel in first["tables"].items()}
        dense = _load_dense(d / first["dense"])
        admission = (d, first.get("admission"))
        for m in chain.manifests[1:]:
            dd = version_dir(self.files_root, m["seq"])
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


def load_latest(root: Root, *, after: int = 0, retries: int = 5) -> ServingState | None:
    """The newest consistent state: the newest verifiable full version, then every delta that
    chains from it. None if there is no usable version newer than ``after``. (A server polls
    with a ``ServingReader``, which remembers what it verified; this reads from scratch. On
    object storage it reads through the root's cache folder: what is cached is not downloaded
    again.)"""
    root = location(root)
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
