"""The model server: recommendations from the newest published model, hot-reloaded while serving.

    GET /recommend?user_id=<int>&k=<1..100>[&rerank=0|1]   top-k videos for the user
    GET /healthz                              200 "ok", or 503 "degraded" with the reasons: no model,
                                              one that serves nothing, or an older version than the
                                              newest published (rejected versions are listed), or a
                                              serving root it cannot read (a bucket out of reach);
                                              and where it reads versions from ("serving")
    GET /readyz                               200 while it can answer /recommend (for load balancers)
    GET /version                              the serving version in use (seq, full_seq, metadata)

Recommendation: the torch ranker's two towers. A user's vector u is scored against every
candidate video's v = E_video[video] + E_creator[creator], plus the item's first-order terms
b_video + b_creator (one matrix product; the catalog gives each video's creator), and the top k
are returned: the ranker's FM terms that involve the user with the item or the item alone. With
a LightGBM champion in the model registry (``data/models/lgbm_ranker``) the server re-ranks: the
two-tower model retrieves ``rerank_candidates`` videos, LightGBM scores each and the top k by its
probability are returned; the score served is that probability corrected for the negative rate
on the model's card (calibrated). Without a LightGBM champion the full torch ranker of the served
version scores them (its DeepFM: per-id biases, FM interactions, MLP), corrected for the
negative rate in the version's metadata. Both score the features the server knows at request
time (``candidate_features``): the catalog's video, user and creator attributes, the hour, and
the online counters the streaming joiner writes (``features/online.py``: the user's plays and
engagements in 24 h, the video's plays in 24 h, its engaged share today, plays in the last hour,
the creator's follows today). ``rerank=0`` asks for the retrieval order alone. A user the model has no row for gets the
trending fallback: the videos the model saw most often (row counts), a proxy for what is popular
now. Parameters are validated (numbers in ASCII digits): a bad request gets a 4xx, never a 5xx.
What a request may send is bounded (``uvicorn_settings``): a head over 16 KiB gets a 431, a body
over 64 KiB a 413, a head not sent within 10 s a 408.

Hot reload: a background thread polls the serving directory (``ServingReader.head``; a local
folder, or ``s3://bucket/prefix`` on object storage, where a poll is one LIST of the manifests and
a new version is downloaded into a local cache folder, then verified) and, when
the newest consistent state is not the one served (by identity: the manifests' checksums, not the
seq), builds the new candidate matrix off to the side and swaps one reference. A request uses
whichever state it picked up; no request waits for or sees a half-applied version. A version that
fails verification (or resolves outside the serving directory) is skipped, logged once and never
hashed again while unchanged; the newest good state serves, and ``/healthz`` says it is falling
back. A state that would serve nothing (no live video rows) is never swapped in.

Closing the loop: every recommendation is logged as impressions (one per item, with every feature
it was scored with in ``served_features``, so the joiner trains on what was served) into the landing zone, in micro-batch files named and published like a collector's
(written under a temp name, then renamed), so the ingest sensor picks them up and the training
path learns from what this server served.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tiktok_pipelines import publish
from tiktok_pipelines.features.online import OnlineCounters
from tiktok_pipelines.features.online import CountersSource
from tiktok_pipelines.layout import DataLayout
from tiktok_pipelines.schemas import landing_rel_path
from tiktok_pipelines.serving.objectstore import S3Root, is_remote
from tiktok_pipelines.serving.store import ServingReader
from tiktok_pipelines.training.evaluate import corrected
from tiktok_pipelines.training.features import LOG_FEATURES, NUMERIC_NAMES

log = logging.getLogger(__name__)
MAX_K = 100
# What an impression logs in served_features: every feature either ranker reads that is not an
# impression column of its own (ids, position, surface, source are) or derived from its time.
LOGGED_FEATURES = ("age_band", "country", "language", "category", "video_duration_ms", "video_age_h",
                   "creator_followers", "video_ctr", "trending_tag", "follows_creator", "user_views_24h",
                   "user_engagements_24h", "video_views_24h")


@dataclass
class _Loaded:
    seq: int
    full_seq: int
    metadata: dict[str, Any]
    user_table: Any
    video_ids: np.ndarray  # candidates, int64[m]
    video_vectors: np.ndarray  # float32[m, dim]
    trending: np.ndarray  # video ids, most seen first
    loaded_at: float
    ranker: Any = None  # the full torch ranker (MonolithRanker) of this state; None: retrieval only
    negative_rate: float = 1.0  # its training sample's, for calibrated scores
    ranker_lock: Any = None  # the ranker's torch modules are not safe for concurrent forwards
    identity: tuple = ()  # (seq, manifest sha256) of each version loaded: a seq can be republished


class Catalog:
    """What the server knows about videos and users, from the platform's catalog exports."""

    def __init__(self, catalog_dir: Path | None) -> None:
        self.creator_of: dict[int, int] = {}
        self.video_info: dict[int, dict] = {}
        self.user_info: dict[int, dict] = {}
        self.creator_followers: dict[int, int] = {}  # the platform's count when the catalog was exported
        if catalog_dir is None:
            return
        videos, users = catalog_dir / "videos.parquet", catalog_dir / "users.parquet"
        if videos.exists():
            have = set(pq.read_schema(videos).names)
            cols = [c for c in ("video_id", "creator_id", "category", "duration_ms", "published_at_ms") if c in have]
            t = pq.read_table(videos, columns=cols).to_pylist()
            self.creator_of = {r["video_id"]: r["creator_id"] for r in t}
            self.video_info = {r["video_id"]: r for r in t}
        if users.exists():
            t = pq.read_table(users, columns=["user_id", "age_band", "country", "language"]).to_pylist()
            self.user_info = {r["user_id"]: r for r in t}
        creators = catalog_dir / "creators.parquet"
        if creators.exists() and "followers" in pq.read_schema(creators).names:
            t = pq.read_table(creators, columns=["creator_id", "followers"])
            self.creator_followers = dict(zip(t.column("creator_id").to_pylist(), t.column("followers").to_pylist()))


# json.dumps(r, separators=(",", ":"), ensure_ascii=False), without building an encoder per call
_encode_line = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class _VideoFeatures:
    """The per-video features ``batch_features`` reads that depend on neither the user nor the
    time, for every video the catalog or the counters know, as arrays by sorted video id: a
    request gathers its candidates' rows instead of looking each up in a few dicts. Built from
    one (catalog, counters) pair by the same per-video lookups (``ModelServer._video_columns``)."""

    def __init__(self, catalog: Catalog, counters: OnlineCounters, ids: np.ndarray, columns: dict) -> None:
        self.catalog, self.counters, self.ids, self.columns = catalog, counters, ids, columns

    def lookup(self, vs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row of each of ``vs``, whether it has one)."""
        pos = np.searchsorted(self.ids, vs)
        pos[pos == len(self.ids)] = 0
        return pos, (self.ids[pos] == vs) if len(self.ids) else np.zeros(len(vs), bool)


class _Columns(dict):
    """Feature columns by name (numpy arrays; lists of strings), before they become a table:
    read the way the feature code reads a ``pa.Table`` (``training/features.py``: ``num_rows``,
    ``column(name).to_numpy()``, ``.to_pylist()``), so a ranker's matrix is built from them as
    from the table, without building one for the hundred candidates of a request."""

    @property
    def num_rows(self) -> int:
        return len(self["user_id"])

    def column(self, name: str) -> _Column:
        return _Column(self[name])

    def table(self) -> pa.Table:
        n = self.num_rows
        return pa.table({name: pa.nulls(n, pa.bool_()) if name == "follows_creator" else values
                         for name, values in self.items()})

    def rows(self, at: np.ndarray, names: tuple[str, ...]) -> list[dict]:
        """Rows ``at`` of columns ``names`` as dicts of Python values (``pa.Table.to_pylist``'s)."""
        picked = [v[at].tolist() if isinstance(v, np.ndarray) else [v[i] for i in at]
                  for v in (self[name] for name in names)]
        return [dict(zip(names, row)) for row in zip(*picked)]


def _lgbm_matrix(columns: _Columns, vocabulary: Any) -> np.ndarray:
    """= ``LGBMRanker.matrix(columns.table(), vocabulary)``: ``training/features.py``'s
    ``numeric_matrix`` with each of its transforms applied to every column at once instead of
    column by column (the same elementwise operations, each on a contiguous block: the same
    bits; ``test_server`` checks), then the vocabulary's codes. A request's hundred candidates
    cost a few numpy calls instead of forty."""
    m = np.empty((len(NUMERIC_NAMES), columns.num_rows), np.float64)
    for j, name in enumerate(NUMERIC_NAMES):
        m[j] = np.asarray(columns[name]).astype(np.float64)  # a null reads nan, then 0
    np.nan_to_num(m, copy=False)
    logs = m[: len(LOG_FEATURES)]  # NUMERIC_NAMES starts with them
    logs[:] = np.log1p(np.clip(logs, 0, None))
    return np.hstack([m.T.astype(np.float32), vocabulary.encode(columns).astype(np.float32)])


class _Column:
    __slots__ = ("values",)

    def __init__(self, values: Any) -> None:
        self.values = values

    def to_numpy(self, zero_copy_only: bool = True) -> np.ndarray:
        return np.asarray(self.values)

    def to_pylist(self) -> list:
        return self.values.tolist() if isinstance(self.values, np.ndarray) else list(self.values)


class ImpressionLog:
    """Buffers served impressions and publishes them to the landing zone in micro-batch files."""

    def __init__(self, landing: Path | None, *, flush_every_s: float = 5.0, max_records: int = 5000) -> None:
        self.landing = landing
        self.flush_every_s = flush_every_s
        self.max_records = max_records
        self._buf: list[str] = []
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        self._seq = 0

    def add(self, records: list[dict]) -> None:
        if self.landing is None:
            return
        lines = [_encode_line(r) for r in records]
        with self._lock:
            self._buf.extend(lines)
            due = len(self._buf) >= self.max_records or time.monotonic() - self._last_flush >= self.flush_every_s
        if due:
            self.flush()

    def flush(self) -> str | None:
        """Publish what is buffered as one landing file; returns its relative path."""
        with self._lock:
            lines, self._buf = self._buf, []
            self._last_flush = time.monotonic()
            if not lines or self.landing is None:
                return None
            self._seq += 1
            seq = self._seq
        now_ms = int(time.time() * 1000)
        # A per-process sequence plus a random suffix in the temp name: several servers may log.
        rel = landing_rel_path("impressions", now_ms, seq * 1000 + os.getpid() % 1000)
        # Collectors publish by rename (a hidden staging file, fsynced): the sensor never sees half a file.
        publish.atomic_write_bytes(self.landing / rel, ("\n".join(lines) + "\n").encode("utf-8"))
        return rel


class ModelServer:
    def __init__(self, serving_root: str | os.PathLike | S3Root, *, catalog_dir: Path | None = None,
                 landing: Path | None = None, reload_interval_s: float = 1.0, model_version_tag: str = "two-tower",
                 models_root: Path | None = None, rerank_candidates: int = 100,
                 counters_path: Path | None = None, counters_lake: str | os.PathLike | None = None) -> None:
        # a local folder, or a serving root on object storage (s3://bucket/prefix, or an S3Root)
        self.serving_root = serving_root if is_remote(serving_root) else Path(serving_root)
        self.models_root = Path(models_root) if models_root else None
        self.rerank_candidates = rerank_candidates
        self.reranker = None  # (registry version, LGBMRanker) of the LightGBM champion

        self.catalog = Catalog(catalog_dir)
        # The online counters: ``counters_lake`` (a lake folder or s3://bucket/prefix) polls the
        # Delta table's version, on either store; ``counters_path`` (a local counters table
        # folder) polls its mtime, which the writer bumps after each commit.
        self.counters_path = Path(counters_path) if counters_path else None
        self.counters_source = CountersSource(counters_lake) if counters_lake is not None else None
        self.counters = OnlineCounters()
        self._counters_mtime: int | None = None
        self.impressions = ImpressionLog(landing)
        self.reload_interval_s = reload_interval_s
        self.model_version_tag = model_version_tag
        self.state: _Loaded | None = None
        self.reader = ServingReader(self.serving_root)
        self.reload_errors = 0
        # A state that loaded but was not swapped in (it would serve nothing, or failed to build),
        # by identity, with the reason: not rebuilt every poll, reported by /healthz.
        self.refused: tuple[tuple, str] | None = None
        self.falling_back = ""  # why the newest version is not the one served ("" when it is)
        # Why the last poll could not read the serving root ("" when it could): a bucket that is
        # unreachable or refuses the credentials. The last good state keeps serving meanwhile.
        self.poll_error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reload()

    # --- loading ------------------------------------------------------------------------------
    def reload_reranker(self) -> bool:
        """Load the LightGBM champion if it changed; True if it did. A broken model keeps the last."""
        if self.models_root is None:
            return False
        from tiktok_pipelines.training.lgbm import LGBMRanker
        from tiktok_pipelines.training.registry import ModelRegistry

        registry = ModelRegistry(self.models_root)
        try:
            champion = registry.champion("lgbm_ranker")
            if champion is None or (self.reranker and self.reranker[0] == champion["version"]):
                return False
            version = champion["version"]
            # Its negatives were kept at the card's rate: served scores are corrected with it, so
            # they are calibrated probabilities (a card without the rate was trained on everything).
            rate = float(registry.card("lgbm_ranker", version).get("negative_rate", 1.0))
            self.reranker = (version, LGBMRanker.load(registry.path("lgbm_ranker", version)), rate)
        except Exception:
            self.reload_errors += 1
            log.exception("re-ranker reload failed; keeping %s", self.reranker[0] if self.reranker else None)
            return False
        log.info("re-ranking with lgbm_ranker v%s", champion["version"])
        return True

    def reload_counters(self) -> bool:
        """Re-read the online counters when they changed; True if they did."""
        if self.counters_source is not None:
            try:
                new = self.counters_source.poll()
            except Exception:
                self.reload_errors += 1
                log.exception("online counters reload failed; keeping those as of %s", self.counters.as_of_ms)
                return False
            if new is None:
                return False
            self.counters = new  # replaced whole, never mutated
            return True
        if self.counters_path is None:
            return False
        try:
            mtime = self.counters_path.stat().st_mtime_ns
        except FileNotFoundError:
            return False
        if mtime == self._counters_mtime:
            return False
        try:
            self.counters = OnlineCounters.read(self.counters_path)  # replaced whole, never mutated
        except Exception:
            self.reload_errors += 1
            log.exception("online counters reload failed; keeping those as of %s", self.counters.as_of_ms)
            return False
        self._counters_mtime = mtime
        return True

    def reload(self) -> bool:
        """Swap in the newest loadable state if it is not the one served; True if it did.

        The newest loadable state is the newest full version and the deltas chaining from it
        whose files verify (``ServingReader``: each version hashed once; a rejected one logged
        once and skipped, so the server falls back to the newest good state, at start as while
        running). It is swapped in when its identity (the manifests' checksums) differs from the
        served one's, so a seq deleted and published again is loaded too. A state that would
        serve nothing (no live video rows: every row deleted or expired) is never swapped in."""
        self.reload_reranker()
        self.reload_counters()
        current = self.state.seq if self.state else 0
        chain = None
        try:
            try:
                chain = self.reader.head()
            except FileNotFoundError:
                raise
            except Exception as e:
                error = f"cannot read {self.reader.location}: {type(e).__name__}: {e}"
                if error != self.poll_error:  # once per distinct error, not once a second
                    log.exception("%s; still serving seq %s", error, current)
                self.poll_error = error
                self.reload_errors += 1
                return False
            self.poll_error = ""
            identity = chain.identity if chain else None
            if chain is None or (self.state is not None and identity == self.state.identity):
                return False
            if self.refused is not None and identity == self.refused[0]:
                return False
            log.info("loading seq %s", chain.seq)
            loaded = self._prepare(self.reader.load(chain))
            if len(loaded.video_ids) == 0:
                self.refused = (identity, f"seq {chain.seq} would serve nothing: it has no live video rows")
                log.error("%s; still serving seq %s", self.refused[1], current)
                return False
            self.state = loaded
            log.info("serving seq %s (full %s)", loaded.seq, loaded.full_seq)
            return True
        except FileNotFoundError:
            return False  # retention removed part of it meanwhile: the next poll lists again
        except Exception as e:  # a bad version must never take the server down: keep the last good one
            self.reload_errors += 1
            if chain is not None:
                self.refused = (chain.identity, f"seq {chain.seq} failed to load: {e}")
            log.exception("reload failed; still serving seq %s", current)
            return False
        finally:
            self._note_fallback()  # on every path: what /healthz reports follows each poll

    def _note_fallback(self) -> None:
        st, newest = self.state, self.reader.newest_seq
        if st is not None and newest > st.seq and (self.reader.rejected or self.refused):
            why = [f"v{s:08d}: {r}" for s, r in self.reader.rejected.items() if s > st.seq]
            if self.refused is not None:
                why.append(self.refused[1])
            self.falling_back = f"serving seq {st.seq}, not the newest (v{newest:08d}): " + "; ".join(why)
        else:
            self.falling_back = ""

    def health(self) -> dict[str, Any]:
        """What /healthz answers: ``ok`` only when a model that serves recommendations is loaded
        and it is the newest one published; ``degraded`` with the reasons otherwise."""
        st, reasons = self.state, []
        if st is None:
            reasons.append("no model loaded" + (f" ({self.refused[1]})" if self.refused else ""))
        elif len(st.video_ids) == 0:
            reasons.append(f"seq {st.seq} serves nothing: no candidate videos")
        if self.falling_back:
            reasons.append(self.falling_back)
        if self.poll_error:
            reasons.append(self.poll_error)
        return {"status": "degraded" if reasons else "ok", "reasons": reasons, "model_loaded": st is not None,
                "serving": self.reader.location,
                "seq": st.seq if st else None, "newest_published_seq": self.reader.newest_seq,
                "rejected_versions": {f"v{s:08d}": r for s, r in self.reader.rejected.items()},
                "reload_errors": self.reload_errors}

    def _prepare(self, st) -> _Loaded:
        videos, creators = st.tables["video_id"], st.tables["creator_id"]
        vrows = videos.live_rows()
        state = videos.row_state(vrows)
        vids = state["id"]
        vecs = state["embedding"].astype(np.float32)
        # The ranker's first-order terms for the item side (its popularity, as the model learnt
        # it) rank candidates too: u . v + b_video + b_creator, as [u, 1] . [v, b].
        bias = np.zeros(len(vids), dtype=np.float32)
        if "video_id_bias" in st.tables:
            bias += st.tables["video_id_bias"].embeddings_for(vids)[:, 0]
        if self.catalog.creator_of:
            cids = np.array([self.catalog.creator_of.get(int(v), -1) for v in vids], dtype=np.int64)
            vecs = vecs + creators.embeddings_for(cids)  # unknown creators read zeros
            if "creator_id_bias" in st.tables:
                bias += st.tables["creator_id_bias"].embeddings_for(cids)[:, 0]
        vecs = np.concatenate([vecs, bias[:, None]], axis=1)
        trending = vids[np.argsort(-state["count"].astype(np.int64), kind="stable")][:MAX_K]
        ranker = None
        try:
            from tiktok_pipelines.training.online import ranker_from_state

            ranker = ranker_from_state(st)  # shares the loaded tables: no copy
        except Exception as e:  # a state without the full model's dense weights: retrieval ranks
            log.warning("seq %s: no full ranker in this version (%s); ranking by retrieval", st.seq, e)
        return _Loaded(st.seq, st.full_seq, st.metadata, st.tables["user_id"], vids, vecs, trending, time.time(),
                       ranker=ranker, negative_rate=float(st.metadata.get("negative_rate", 1.0)),
                       ranker_lock=threading.Lock(), identity=st.identity)

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.reload_interval_s):
                self.reload()

        self._thread = threading.Thread(target=loop, name="model-reloader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        self.impressions.flush()

    # --- serving ------------------------------------------------------------------------------
    # The per-video features for the current counters (``_video_features``); class defaults.
    _video_memo: _VideoFeatures | None = None
    _video_memo_for: tuple | None = None  # the (counters, catalog) a build was started for
    _video_memo_lock = threading.Lock()  # guards _video_memo_for (one per process: held for an assignment)

    def rank(self, user_ids: np.ndarray, k: int, st: _Loaded | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-k for many users at once: (video ids int64[n, k], scores float32[n, k], personal bool[n]).

        The one ranking path: ``/recommend`` calls it for one user, the simulator's closed loop
        for every user of a day. Known users get their two-tower top k (u . v over every
        candidate, in chunks of users so memory stays bounded); unknown users the trending
        fallback (score 0). Rows shorter than k (a tiny catalog) are padded with id -1."""
        st = st or self.state
        if st is None:
            raise LookupError("no model loaded yet")
        user_ids = np.asarray(user_ids, dtype=np.int64)
        n, m = len(user_ids), len(st.video_ids)
        ids = np.full((n, k), -1, dtype=np.int64)
        scores = np.zeros((n, k), dtype=np.float32)
        trend = st.trending[:k]
        ids[:, : len(trend)] = trend
        user_rows = st.user_table.lookup(user_ids)
        known = (user_rows >= 0) & (m > 0)
        rows = np.flatnonzero(known)
        kk = min(k, m)
        for start in range(0, len(rows), 1024):
            r = rows[start:start + 1024]
            # = embeddings_for(user_ids[r]) (every one has a row), read with numpy: the table's
            # gather is a parallel kernel whose start costs more than a user's row
            u = st.user_table.storage.embeddings[user_rows[r]].astype(np.float32)
            s = np.concatenate([u, np.ones((len(r), 1), np.float32)], axis=1) @ st.video_vectors.T
            top = np.argpartition(-s, kk - 1, axis=1)[:, :kk] if kk < m else np.tile(np.arange(m), (len(r), 1))
            top_s = np.take_along_axis(s, top, axis=1)
            order = np.argsort(-top_s, axis=1, kind="stable")
            top, top_s = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_s, order, axis=1)
            ids[r] = -1
            ids[r, :kk] = st.video_ids[top]
            scores[r, :kk] = top_s
        return ids, scores, known

    def candidate_features(self, user_id: int, video_ids: np.ndarray, now_ms: int) -> pa.Table:
        """Every feature a ranker uses for (user, candidates), as the server knows them now: the
        catalog's attributes, and counters of what users did (``features/online.py``, written by
        the streaming joiner). The same columns the joiner gives a training example, so what is
        logged with an impression is what was scored. Candidates are scored at position 0 (the
        position a training example records is where it was shown: a bias, not a merit);
        ``follows_creator`` is unknown here (the server holds no follow graph) and logged as null."""
        return self._candidate_columns(user_id, video_ids, now_ms).table()

    def _candidate_columns(self, user_id: int, video_ids: np.ndarray, now_ms: int) -> _Columns:
        video_ids = np.asarray(video_ids, dtype=np.int64)
        return self._batch_columns(np.full(len(video_ids), user_id, dtype=np.int64), video_ids, now_ms)

    def batch_features(self, user_ids: np.ndarray, video_ids: np.ndarray, now_ms: int) -> pa.Table:
        """``candidate_features`` for pairs (user_ids[i], video_ids[i]): each distinct user and
        video is looked up once, so a whole day's users cost one pass (the closed loop)."""
        return self._batch_columns(user_ids, video_ids, now_ms).table()

    def _batch_columns(self, user_ids: np.ndarray, video_ids: np.ndarray, now_ms: int) -> _Columns:
        user_ids, video_ids = np.asarray(user_ids, np.int64), np.asarray(video_ids, np.int64)
        c, cat = self.counters, self.catalog
        us, u_at = np.unique(user_ids, return_inverse=True)
        users = [cat.user_info.get(int(u), {}) for u in us]
        vs, v_at = np.unique(video_ids, return_inverse=True)
        memo = self._video_features(c)
        if memo is None or len(memo.ids) == 0:  # none built yet, or no catalog and no counters
            video = self._video_columns(vs, c)
        else:
            at, found = memo.lookup(vs)
            video = {name: col[at] for name, col in memo.columns.items()}
            if not found.all():  # not in the catalog nor the counters: looked up one by one
                for name, col in self._video_columns(vs[~found], c).items():
                    video[name][~found] = col
        published = video.pop("published_at_ms")
        published = np.where(published == 0, now_ms, published)  # unknown: now

        def per_user(f):
            return np.asarray([f(int(u), d) for u, d in zip(us, users)], dtype=object)[u_at]

        def per_video(name):
            return video[name][v_at]

        n = len(user_ids)
        return _Columns({
            "user_id": user_ids,
            "video_id": video_ids,
            "creator_id": per_video("creator_id"),
            "video_duration_ms": per_video("video_duration_ms"),
            "video_age_h": np.round(np.maximum(0, (now_ms - published) / 3_600_000), 1)[v_at],
            "creator_followers": per_video("creator_followers"),
            "user_views_24h": per_user(lambda u, d: c.get("user", "views_24h", u)).astype(np.int64),
            "user_engagements_24h": per_user(lambda u, d: c.get("user", "engagements_24h", u)).astype(np.int64),
            "video_views_24h": per_video("video_views_24h"),
            "video_ctr": per_video("video_ctr"),
            "position": np.zeros(n, dtype=np.int64),
            "hour_of_day": np.full(n, (now_ms // 3_600_000) % 24, dtype=np.int64),
            "trending_tag": per_video("trending_tag"),
            "follows_creator": np.full(n, None, dtype=object),  # a table's is pa.nulls(n, pa.bool_())
            "category": per_video("category").tolist(),
            "country": per_user(lambda u, d: d.get("country")).tolist(),
            "language": per_user(lambda u, d: d.get("language")).tolist(),
            "age_band": per_user(lambda u, d: d.get("age_band")).tolist(),
            "surface": ["foryou"] * n, "candidate_source": ["personal"] * n,
        })

    def _video_columns(self, vs: np.ndarray, counters: OnlineCounters) -> dict[str, np.ndarray]:
        """The per-video columns of ``batch_features`` for distinct videos ``vs``, looked up one by
        one in the catalog and ``counters`` (``published_at_ms`` 0: unknown)."""
        c, cat = counters, self.catalog
        info = [cat.video_info.get(int(v), {}) for v in vs]
        creators = np.array([int(cat.creator_of.get(int(v), 0)) for v in vs], dtype=np.int64)
        return {
            "creator_id": creators,
            "video_duration_ms": np.asarray([i.get("duration_ms") or 0 for i in info], np.int64),
            "published_at_ms": np.asarray([i.get("published_at_ms") or 0 for i in info], np.float64),
            "creator_followers": np.asarray([cat.creator_followers.get(int(cr), 0)
                                             + c.get("creator", "follows_today", cr) for cr in creators], np.int64),
            "video_views_24h": np.asarray([c.get("video", "views_24h", v) for v in vs], np.int64),
            "video_ctr": np.asarray(np.round([c.video_ctr(v) for v in vs], 4), np.float64),
            "trending_tag": np.asarray([c.trending(v) for v in vs], bool),
            "category": np.asarray([i.get("category") for i in info], object),
        }

    def _video_features(self, counters: OnlineCounters) -> _VideoFeatures | None:
        """The per-video columns of every known video for ``counters`` and the catalog, or None
        until they are built: the first request after the counters changed starts a thread that
        builds them (tens of ms for 20k videos), and requests look their candidates up one by one
        until it is done, so none waits for it (nor retries a build that failed)."""
        memo, catalog = self._video_memo, self.catalog
        if memo is not None and memo.counters is counters and memo.catalog is catalog:
            return memo
        with self._video_memo_lock:
            started = self._video_memo_for
            if started is not None and started[0] is counters and started[1] is catalog:
                return None  # being built, or it failed
            self._video_memo_for = (counters, catalog)
        threading.Thread(target=self._build_video_features, args=(counters, catalog), name="video-features",
                         daemon=True).start()
        return None

    def _build_video_features(self, counters: OnlineCounters, catalog: Catalog) -> None:
        try:
            known = [np.fromiter(catalog.video_info, np.int64, len(catalog.video_info)),
                     np.fromiter(catalog.creator_of, np.int64, len(catalog.creator_of))]
            known += [np.fromiter(values, np.int64, len(values))
                      for (entity, _), values in counters.values.items() if entity == "video"]
            ids = np.unique(np.concatenate(known))
            self._video_memo = _VideoFeatures(catalog, counters, ids, self._video_columns(ids, counters))
        except Exception:
            log.exception("building the per-video features failed; looking videos up one by one")

    def warm_up(self) -> None:
        """Build the per-video features for the current counters now (``serve``, before it listens)."""
        counters, catalog = self.counters, self.catalog
        with self._video_memo_lock:
            self._video_memo_for = (counters, catalog)
        self._build_video_features(counters, catalog)

    def rank_full(self, user_ids: np.ndarray, k: int, now_ms: int | None = None,
                  st: _Loaded | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``rank`` followed by the full torch ranker, for many users at once (what ``/recommend``
        does per user without a LightGBM champion): the two towers retrieve ``rerank_candidates``,
        the DeepFM scores them on ``batch_features``, the top k are returned. Without a full
        ranker in the served version, the retrieval order."""
        st = st or self.state
        if st is None:
            raise LookupError("no model loaded yet")
        if st.ranker is None:
            return self.rank(user_ids, k, st)
        depth = max(k, self.rerank_candidates)
        ids, _, personal = self.rank(user_ids, depth, st)
        n = len(ids)
        out_ids = np.full((n, k), -1, dtype=np.int64)
        out_scores = np.zeros((n, k), dtype=np.float32)
        valid = ids >= 0
        rows, cols = np.nonzero(valid)
        if len(rows):
            features = self.batch_features(np.asarray(user_ids, np.int64)[rows], ids[rows, cols],
                                           int(time.time() * 1000) if now_ms is None else now_ms)
            with st.ranker_lock:
                p = st.ranker.predict_served(features, st.negative_rate)
            scores = np.full(ids.shape, -np.inf)
            scores[rows, cols] = p
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            top = np.take_along_axis(scores, order, axis=1)
            keep = np.isfinite(top)
            out_ids[keep] = np.take_along_axis(ids, order, axis=1)[keep]
            out_scores[keep] = top[keep]
        return out_ids, out_scores, personal

    def recommend(self, user_id: int, k: int, rerank: bool | None = None) -> dict[str, Any]:
        """Top k for a user. Retrieval: the two towers (or trending for an unknown user). Ranking
        of the retrieved candidates: the LightGBM champion when there is one (``rerank`` None or
        True), else the full torch ranker of the served version (its DeepFM score: biases, FM,
        MLP), else the retrieval order; ``rerank=False`` asks for the retrieval order."""
        st = self.state  # one reference for the whole request: reloads swap, never mutate
        if st is None:
            raise LookupError("no model loaded yet")
        reranker = self.reranker if rerank is not False else None
        if rerank and reranker is None:
            raise LookupError("no LightGBM champion to re-rank with")
        use_torch = rerank is None and reranker is None and st.ranker is not None
        depth = max(k, self.rerank_candidates) if (reranker or use_torch) else k
        ids, scores, personal = self.rank(np.array([user_id], dtype=np.int64), depth, st)
        keep = ids[0] >= 0
        cand, cand_scores = ids[0][keep], scores[0][keep]
        ranked_by = "two_tower" if personal[0] else "trending"
        now_ms = int(time.time() * 1000)
        features = self._candidate_columns(user_id, cand, now_ms)  # candidate_features, as columns
        if len(cand) and (reranker is not None or use_torch):
            if reranker is not None:
                # = reranker[1].predict(features.table()), on one thread: starting OpenMP's costs
                # more than a hundred rows (2 ms against 0.4 on two busy cores)
                model = reranker[1]
                p = corrected(model.booster.predict(_lgbm_matrix(features, model.vocabulary), num_threads=1),
                              reranker[2])
                ranked_by = f"lgbm_ranker-v{reranker[0]}"
            else:
                with st.ranker_lock:
                    p = st.ranker.predict_served(features.table(), st.negative_rate)
                ranked_by = f"torch_ranker-seq{st.seq}"
            order = np.argsort(-p, kind="stable")[:k]
        else:
            p, order = cand_scores, np.arange(min(k, len(cand)))
        source = "personal" if personal[0] else "trending"
        request_id = f"srv-{uuid.uuid4().hex[:16]}"
        items = [(int(cand[i]), float(p[i])) for i in order]
        self._log(user_id, request_id, items, features.rows(order, LOGGED_FEATURES), source, st.seq, now_ms)
        return {"user_id": user_id, "request_id": request_id, "model_seq": st.seq, "source": source,
                "ranked_by": ranked_by, "items": [{"video_id": v, "score": sc} for v, sc in items]}

    def _log(self, user_id: int, request_id: str, items: list[tuple[int, float]], rows: list[dict],
             source: str, seq: int, now_ms: int) -> None:
        """One impression per item, with every feature it was scored with (``served_features``:
        ``rows``, the items' ``LOGGED_FEATURES``), so the joiner trains on exactly what was served."""
        records = []
        for pos, ((vid, score), served) in enumerate(zip(items, rows)):
            records.append({
                "event_id": f"{request_id}-{pos}", "ts_ms": now_ms, "user_id": user_id,
                "request_id": request_id, "session_id": request_id, "video_id": vid,
                "creator_id": int(self.catalog.creator_of.get(vid, 0)), "position": pos,
                "surface": "foryou", "candidate_source": "personal" if source == "personal" else "trending",
                "model_version": f"{self.model_version_tag}-seq{seq}", "score": score,
                "served_features": served,
            })
        self.impressions.add(records)


# A query parameter that is a number: ASCII digits, at most 20 of them (more is out of range anyway).
_DIGITS = re.compile(r"[0-9]{1,20}")


def _bad(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(server: ModelServer) -> Starlette:
    async def recommend(request: Request) -> JSONResponse:
        q = request.query_params
        if "user_id" not in q:
            return _bad("user_id is required")
        # ASCII digits only: int() also reads '٤٢', '４２', '4_2', '+42' and ' 42' as 42 (issue 15).
        if not _DIGITS.fullmatch(q["user_id"]):
            return _bad("user_id must be an integer (ASCII digits)")
        user_id = int(q["user_id"])
        if not 0 <= user_id < 2**63:
            # The event contract (schemas.py) has user_id >= 0: a negative id was served, and the
            # impressions logged for it were quarantined at ingest (found by tests/fuzz).
            return _bad("user_id must be a non-negative int64")
        if not _DIGITS.fullmatch(q.get("k", "10")):
            return _bad("k must be an integer (ASCII digits)")
        k = int(q.get("k", "10"))
        if not 1 <= k <= MAX_K:
            return _bad(f"k must be between 1 and {MAX_K}")
        rerank = {None: None, "1": True, "true": True, "0": False, "false": False}.get(q.get("rerank"), "bad")
        if rerank == "bad":
            return _bad("rerank must be 0 or 1")
        try:
            return JSONResponse(server.recommend(user_id, k, rerank))
        except LookupError as e:
            return _bad(str(e), 503)

    async def healthz(request: Request) -> JSONResponse:
        # 503 when degraded (nothing served, or an older version than the newest published): a
        # monitor sees it; a load balancer that only needs "can it answer" routes on /readyz.
        h = server.health()
        return JSONResponse(h, status_code=200 if h["status"] == "ok" else 503)

    async def readyz(request: Request) -> JSONResponse:
        st = server.state
        ready = st is not None and len(st.video_ids) > 0
        return JSONResponse({"ready": ready, "seq": st.seq if st else None}, status_code=200 if ready else 503)

    async def version(request: Request) -> JSONResponse:
        st = server.state
        if st is None:
            return _bad("no model loaded yet", 503)
        return JSONResponse({"seq": st.seq, "full_seq": st.full_seq, "metadata": st.metadata,
                             "loaded_at": st.loaded_at, "videos": int(len(st.video_ids)),
                             "reranker": f"lgbm_ranker-v{server.reranker[0]}" if server.reranker else None})

    return Starlette(routes=[Route("/recommend", recommend), Route("/healthz", healthz), Route("/readyz", readyz),
                             Route("/version", version)])


# What one request may send (issue 15, finding 7: a 150 MB header was read whole, for 55 s, while
# every other request waited; four of 200 MB grew the server by a gigabyte). uvicorn's httptools
# protocol has no limit of its own: ``_bounded_protocol`` adds these.
MAX_HEAD_BYTES = 16 * 1024  # request line and headers (h11's default): beyond, a 431 and the connection closes
MAX_BODY_BYTES = 64 * 1024  # no endpoint reads a body: beyond, a 413
HEAD_TIMEOUT_S = 10.0  # from a head's first byte to its end: beyond, a 408 (a head sent a byte at a time)
LINGER_S = 5.0  # after a refusal, what the client still sends is read and dropped this long, so it reads the answer
LIMIT_CONCURRENCY = 512  # connections or requests in flight: beyond, uvicorn answers 503


def _bounded_protocol():
    """uvicorn's httptools protocol with the limits above, or None without httptools."""
    try:
        from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
    except ImportError:
        return None

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        """Counts the bytes of a request's head as they arrive, before the parser buffers them
        (at most one read past the limit is ever held), and of its body; refuses a request over
        a limit with its status and ``connection: close``, then half-closes and drops whatever
        else arrives for ``LINGER_S`` (closing at once would reset the connection and lose the
        answer while the client is still sending)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_head, self._head_bytes, self._body_bytes = True, 0, 0
            self._head_timer: Any = None
            self._refusal: tuple[int, str] | None = None
            self._refused = False
            self._current: Any = None  # the cycle of the request whose body is arriving

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return  # lingering: dropped
            if self._in_head:
                end = data.find(b"\r\n\r\n")
                self._head_bytes += len(data) if end < 0 else end + 4
                if self._head_bytes > MAX_HEAD_BYTES:
                    return self._refuse(431, f"request head over {MAX_HEAD_BYTES} bytes")
                if self._head_timer is None:
                    self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_timeout)
            super().data_received(data)
            if self._refusal is not None and not self._refused:
                self._refuse(*self._refusal)

        def _head_timeout(self) -> None:
            self._head_timer = None
            if self._in_head and not self._refused and not self.transport.is_closing():
                self._refuse(408, f"request head not received within {HEAD_TIMEOUT_S:g} s")

        def on_headers_complete(self) -> None:
            self._in_head, self._head_bytes, self._body_bytes, self._current = False, 0, 0, None
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            length = dict(self.headers).get(b"content-length", b"0")
            if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                self._refusal = (413, f"request body over {MAX_BODY_BYTES} bytes")
                return  # not started
            super().on_headers_complete()
            self._current = self.cycle

        def on_body(self, body: bytes) -> None:
            if self._refusal is not None:
                return
            self._body_bytes += len(body)
            if self._body_bytes > MAX_BODY_BYTES:
                self._refusal = (413, f"request body over {MAX_BODY_BYTES} bytes")
                return
            super().on_body(body)

        def on_message_complete(self) -> None:
            self._in_head = True
            if self._refusal is None:
                super().on_message_complete()

        def _refuse(self, status: int, message: str) -> None:
            self._refused = True
            log.warning("refused a request from %s: %s", self.client, message)
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            self._unset_keepalive_if_required()
            self.pipeline.clear()
            current = None if self._in_head else self._current  # a body over the limit: its request runs
            if current is not None:
                current.disconnected = True  # what it answers from now on is dropped
                if current.response_started:  # it answered already (or is answering): just hang up
                    self.transport.close()
                    return
            body = message.encode("ascii")
            self.transport.write(b"".join([
                STATUS_LINE[status], b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n", body]))
            self.flow.resume_reading()
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().connection_lost(exc)

    return BoundedHttpToolsProtocol


def uvicorn_settings() -> dict[str, Any]:
    """uvicorn's settings for the model server (``serve``, and the tests' servers): the request
    limits above (without httptools, h11's limit on a head: a 400 instead of a 431)."""
    protocol = _bounded_protocol()
    http: dict[str, Any] = ({"http": protocol} if protocol is not None
                            else {"http": "h11", "h11_max_incomplete_event_size": MAX_HEAD_BYTES})
    return {**http, "limit_concurrency": LIMIT_CONCURRENCY, "timeout_keep_alive": 5}


def serve(data_dir: Path, *, host: str = "127.0.0.1", port: int = 8000, reload_interval_s: float = 1.0,
          serving: str | None = None, lake: str | None = None) -> None:
    """``serving``: where the versions are (a folder or ``s3://bucket/prefix``; default
    ``<data_dir>/serving``); ``lake``: where the online counters are (default ``<data_dir>/lake``)."""
    import uvicorn

    data = DataLayout(data_dir)
    server = ModelServer(serving or data.serving, catalog_dir=data.catalog, landing=data.landing,
                         reload_interval_s=reload_interval_s, models_root=data.models,
                         counters_lake=lake or data.lake)
    server.start()
    server.warm_up()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, so the `finally` below
        # never runs on a normal stop: flush the buffered impressions here (found by the soak).
        server.stop()

    app = create_app(server)
    app.router.lifespan_context = lifespan
    try:
        uvicorn.run(app, host=host, port=port, log_level="info", **uvicorn_settings())
    finally:
        server.stop()
