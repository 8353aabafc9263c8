"""``simulate()``: the world, day by day, into landing micro-batch files plus catalog and truth.

Output layout under ``out_dir``::

    landing/<stream>/dt=<YYYY-MM-DD>/<stream>-<YYYYMMDDTHHMMSS>Z-<seq>.ndjson   (schemas.landing_rel_path)
    catalog/{users,creators,videos,campaigns}.parquet                       (schemas.CATALOG)
    truth/...                                                              (never read by the pipeline)

A file holds one stream's records for one batch window, flushed at the window's end; records that
arrive late (or are re-sent) go into a later window's file. Files are written in flush order,
each to a hidden temp name in its final directory and then renamed, so a watcher never sees half
a file. A later day range can be generated into the same ``out_dir``: entities are rebuilt
identically from the seed, each day's randomness comes from (seed, day), and file sequence
numbers continue from what is on disk.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from tiktok_pipelines import publish, schemas
from tiktok_pipelines.layout import DataLayout
from tiktok_pipelines.simulator import dirty as dirty_mod
from tiktok_pipelines.simulator.dirty import KINDS, LINE_KINDS, corrupt_line
from tiktok_pipelines.simulator.events import (
    AD_LOOKBACK_DAYS,
    GENERATORS,
    PARTS,
    serial_columns,
)
from tiktok_pipelines.simulator.world import DAY_MS, World, build_world, day_start_ms

STREAM_NAMES = tuple(schemas.STREAMS)
_ARROW_TYPES = {"int64": pa.int64(), "string": pa.string(), "float64": pa.float64(), "bool": pa.bool_(),
                "list<string>": pa.list_(pa.string())}
_INTERNAL = ("_wts", "_kind", "_field", "_aux", "_delay")


@dataclass
class SimulationSummary:
    out_dir: str
    seed: int
    first_day: int
    days: int
    start_date: str  # date of the first simulated day
    end_date: str  # date of the last simulated day
    catalog_source: str  # "kuairec" or "generated"
    files_written: int = 0
    files_by_stream: dict[str, int] = field(default_factory=dict)
    lines_by_stream: dict[str, int] = field(default_factory=dict)  # every line written
    valid_by_stream: dict[str, int] = field(default_factory=dict)  # should reach the lake (clean + late)
    late_by_stream: dict[str, int] = field(default_factory=dict)  # valid, delivered in a later window
    dirty_by_kind: dict[str, int] = field(default_factory=dict)  # quarantine kinds + duplicates
    catalog_rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)  # where the time went

    @property
    def lines(self) -> int:
        return sum(self.lines_by_stream.values())

    @property
    def events_per_s(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lines"] = self.lines
        d["events_per_s"] = round(self.events_per_s, 1)
        return d


# ------------------------------------------------------------------------------- file system


def _atomic_bytes(path: Path, data: bytes | list) -> None:
    """Publish ``data`` (bytes, or a list of byte pieces) at ``path`` with the package's one
    publish helper: a hidden staging file renamed into place, so a watcher never sees half a file
    (the landing listing skips dot-files) and a crash leaves the last whole one. Not fsynced: a
    run writes thousands of files that its seed makes again (fsyncs made it 3x slower)."""
    publish.atomic_write_bytes(path, data, durable=False)


def _atomic_parquet(path: Path, table: pa.Table | pl.DataFrame) -> None:
    """A parquet file published as ``_atomic_bytes`` does (serialised in memory: the largest, the
    truth's per-record table, is a few MB)."""
    buf = io.BytesIO()
    if isinstance(table, pl.DataFrame):
        table.write_parquet(buf, compression="zstd")
    else:
        pq.write_table(table, buf, compression="zstd")
    publish.atomic_write_bytes(path, buf.getvalue(), durable=False)


def next_seqs(landing: Path) -> dict[str, int]:
    """Per stream, the sequence number the next landing file gets (continuing what is on disk)."""
    out = {}
    for stream in STREAM_NAMES:
        top = 0
        d = landing / stream
        if d.is_dir():
            for p in d.glob(f"dt=*/{stream}-*.ndjson"):
                m = schemas.LANDING_NAME_RE.match(p.name)
                if m:
                    top = max(top, int(m.group("seq")))
        out[stream] = top + 1
    return out


def _catalog_table(name: str, df: pl.DataFrame) -> pa.Table:
    cols = schemas.CATALOG[name].columns
    schema = pa.schema([(c, _ARROW_TYPES[t]) for c, t in cols.items()])
    return df.select(list(cols)).to_arrow().cast(schema)


# ---------------------------------------------------------------------------------- writing


SERIALISE_ROWS = 200_000  # rows per write_ndjson call: few calls, and groups to spread over threads
# Threads: serialise in the background while files are written; generate day i+1 while day i is written.
SERIALISE_THREAD = True
PIPELINE_DAYS = True
_LATE = KINDS.index("late")
_COPY_KINDS = [KINDS.index(k) for k in ("late", "exact_duplicate", "conflicting_duplicate")]


class _Lines:
    """A time-ordered frame serialised in large groups of whole windows; each window's bytes are
    cut out of its group, leaving out ``skip`` rows and rewriting ``special`` (line-level dirty)
    rows in Python.

    One ``write_ndjson`` per group (not per file) keeps polars' per-call cost off the hot path,
    and the big frame is never reordered: rows that leave their place (late, dirty) are skipped
    here and written from the small ``extras`` frame instead.
    """

    def __init__(self, stream: str, frame: pl.DataFrame, bounds: dict[int, tuple[int, int]],
                 skip: np.ndarray, special: np.ndarray):
        self.stream = stream
        self.frame = frame
        self.bounds = bounds
        self.skip = skip
        self.special = special
        if len(special):
            self.kinds = frame.get_column("_kind").to_numpy()
            self.aux = frame.get_column("_aux").to_numpy()
            self.fields = frame.get_column("_field")
        self.groups: list[tuple[int, int]] = []
        lo = hi = None
        for w in sorted(bounds):
            a, b = bounds[w]
            if lo is None:
                lo, hi = a, b
            elif b - lo > SERIALISE_ROWS:
                self.groups.append((lo, hi))
                lo, hi = a, b
            else:
                hi = b
        if lo is not None:
            self.groups.append((lo, hi))
        self._done: dict[int, tuple[int, int, bytes, np.ndarray]] = {}
        self.futures: dict = {}

    def kept(self, w: int) -> int:
        a, b = self.bounds[w]
        return b - a - int(np.searchsorted(self.skip, b) - np.searchsorted(self.skip, a))

    def serialise(self, group: tuple[int, int]) -> None:
        lo, hi = group
        buf = io.BytesIO()
        chunk = self.frame.slice(lo, hi - lo)
        chunk.select(serial_columns(self.stream, chunk.columns)).write_ndjson(buf)
        data = buf.getvalue()
        nl = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
        if len(nl) != hi - lo:
            raise RuntimeError("a serialised record spans lines")
        self._done[lo] = (lo, hi, data, nl)

    def window_pieces(self, w: int) -> list:
        """The window's lines as a list of byte pieces (views into the group's buffer)."""
        a, b = self.bounds[w]
        lo = next(g[0] for g in reversed(self.groups) if g[0] <= a)
        if lo in self.futures:
            self.futures.pop(lo).result()
        if lo not in self._done:
            self.serialise(next(g for g in self.groups if g[0] == lo))
        _, _, raw, nl = self._done[lo]
        data = memoryview(raw)

        def line_start(i: int) -> int:
            return 0 if i == lo else int(nl[i - lo - 1]) + 1

        start, end = line_start(a), int(nl[b - 1 - lo]) + 1
        skip = self.skip[np.searchsorted(self.skip, a):np.searchsorted(self.skip, b)]
        special = self.special[np.searchsorted(self.special, a):np.searchsorted(self.special, b)]
        if not len(skip) and not len(special):
            return [data[start:end]]
        if not len(special):  # vectorised: the kept byte ranges between skipped lines
            s_end = nl[skip - lo]
            s_start = np.where(skip == lo, 0, nl[np.maximum(skip - lo - 1, 0)] + 1)
            keep_from = np.concatenate(([start], s_end + 1)).tolist()
            keep_to = np.concatenate((s_start, [end])).tolist()
            return [data[x:y] for x, y in zip(keep_from, keep_to) if y > x]
        pieces, prev = [], start
        rewrite = set(special.tolist())
        for i in sorted(skip.tolist() + special.tolist()):
            ls, le = line_start(i), int(nl[i - lo])
            pieces.append(data[prev:ls])
            if i in rewrite:
                pieces.append(corrupt_line(bytes(data[ls:le]), int(self.kinds[i]), self.fields[i], int(self.aux[i])))
                prev = le  # keeps its newline
            else:
                prev = le + 1  # left out with its newline
        pieces.append(data[prev:end])
        return pieces


def _window_bounds(dw: np.ndarray, offset: int = 0) -> dict[int, tuple[int, int]]:
    wins, starts = np.unique(dw, return_index=True)
    ends = np.append(starts[1:], len(dw))
    return dict(zip(wins.tolist(), zip((starts + offset).tolist(), (ends + offset).tolist())))


class _Run:
    """State of one simulate() call: windows, carried-over records, sequence numbers, truth."""

    def __init__(self, out: Path, world: World, config: SimulationConfig, *, recommender=None):
        self.out, self.world = out, world
        self.recommender = recommender
        self.landing = DataLayout(out).landing
        self.first_day, self.days = config.first_day, config.days
        self.batch_ms = config.batch_minutes * 60_000
        self.windows_per_day = DAY_MS // self.batch_ms
        self.run_start = day_start_ms(world.start_date, config.first_day)
        self.run_end = self.run_start + config.days * DAY_MS
        tail_ms = max(dirty_mod.MAX_LATE_MS, dirty_mod.MAX_DUP_DELAY_WINDOWS * self.batch_ms)
        self.last_window = config.days * self.windows_per_day + -(-tail_ms // self.batch_ms)
        self.dirty_rate, self.late_rate, self.weights = config.dirty_rate, config.late_rate, config.weights
        self.events_per_day = config.events_per_day
        self.seq = next_seqs(self.landing)
        # Records waiting for a later window (late, re-sent, or happening after today).
        self.carry: dict[str, list[pl.DataFrame]] = {s: [] for s in STREAM_NAMES}
        self.file_rows: list[dict] = []
        self.record_frames: list[pl.DataFrame] = []
        self.phase: dict[str, float] = {}

    def _tick(self, name: str, t0: float) -> float:
        t = time.perf_counter()
        self.phase[name] = self.phase.get(name, 0.0) + t - t0
        return t

    def generate(self, day: int, parts=PARTS) -> dict[str, tuple[list[pl.DataFrame], list[pl.DataFrame]]]:
        """Per stream: (time-ordered base frames, extras frames) for ``day``."""
        out: dict[str, tuple[list, list]] = {s: ([], []) for s in STREAM_NAMES}
        for part in parts:
            t = time.perf_counter()
            if part == "feed" and self.recommender is not None:
                frames = GENERATORS[part](self.world, day, self.events_per_day, recommender=self.recommender)
            else:
                frames = GENERATORS[part](self.world, day, self.events_per_day)
            t = self._tick("generate", t)
            for stream, df in frames.items():
                base, extras = dirty_mod.inject(
                    df, stream=stream, seed=self.world.seed, part=part, day=day, dirty_rate=self.dirty_rate,
                    late_rate=self.late_rate, weights=self.weights, batch_ms=self.batch_ms)
                out[stream][0].append(base)
                if extras is not None:
                    out[stream][1].append(extras)
            self._tick("dirty", t)
        return out

    def lookback(self) -> None:
        """Ads from the days before the run whose conversions land inside it."""
        for day in range(max(0, self.first_day - AD_LOOKBACK_DAYS), self.first_day):
            for stream, (bases, extras) in self.generate(day, parts=("ads",)).items():
                self.carry[stream].extend(b.filter(pl.col("_kind") != dirty_mod.DROPPED) for b in bases)
                self.carry[stream].extend(extras)

    def _prepare(self, stream: str, bases: list[pl.DataFrame], extras: list[pl.DataFrame], limit: int):
        """(base _Lines, extras _Lines) for the windows below ``limit``; the rest is carried."""
        B, r0 = self.batch_ms, self.run_start
        base_lines = extra_lines = None
        incoming, self.carry[stream] = self.carry[stream], []
        carried_now: list[pl.DataFrame] = []
        bases = [b for b in bases if b.height]
        if len(bases) > 1:
            bases = [pl.concat(bases, how="vertical").sort("_wts", maintain_order=True)]
        if bases:
            base = bases[0]
            wts = base.get_column("_wts").to_numpy()
            kind = base.get_column("_kind").to_numpy()
            lo = int(np.searchsorted(wts, r0))
            hi = int(np.searchsorted(wts, self.run_end))
            cut = max(lo, min(hi, int(np.searchsorted(wts, r0 + limit * B))))
            if cut < hi:  # happens after today (delayed conversions): a later day writes it
                carried_now.append(base.slice(cut, hi - cut).filter(pl.col("_kind") != dirty_mod.DROPPED))
            k = kind[lo:cut]
            late = np.flatnonzero(k == _LATE) + lo
            if len(late):
                extras = extras + [base[late]]
            if cut > lo:
                skip = np.flatnonzero(k != 0) + lo
                base_lines = _Lines(stream, base, _window_bounds((wts[lo:cut] - r0) // B, lo), skip,
                                    np.zeros(0, np.int64))
        extras = [e for e in incoming + extras if e.height]
        if extras:
            ex = pl.concat(extras, how="vertical")
            wts = ex.get_column("_wts").to_numpy()
            kind = ex.get_column("_kind").to_numpy()
            dw = np.minimum((wts - r0) // B + ex.get_column("_delay").to_numpy(), self.last_window)
            inside = (wts >= r0) & (wts < self.run_end) & (kind != dirty_mod.DROPPED)
            later = np.flatnonzero(inside & (dw >= limit))
            if len(later):
                carried_now.append(ex[later])
            sel = np.flatnonzero(inside & (dw < limit))
            if len(sel):
                sel = sel[np.lexsort((wts[sel], np.isin(kind[sel], _COPY_KINDS), dw[sel]))]
                ex = ex[sel]
                special = np.flatnonzero(np.isin(ex.get_column("_kind").to_numpy(), list(LINE_KINDS)))
                extra_lines = _Lines(stream, ex, _window_bounds(dw[sel]), np.zeros(0, np.int64), special)
        return base_lines, extra_lines, carried_now

    def _write_windows(self, windows: list[int], prepared: dict, paths: dict) -> None:
        for w in windows:  # flush order across streams, as a set of collectors would
            flushed = self.run_start + (w + 1) * self.batch_ms
            for stream, (base_lines, extra_lines) in prepared.items():
                in_base = base_lines is not None and w in base_lines.bounds
                in_extra = extra_lines is not None and w in extra_lines.bounds
                if not (in_base or in_extra):
                    continue
                n_base = base_lines.kept(w) if in_base else 0
                data = (base_lines.window_pieces(w) if in_base else []) + (
                    extra_lines.window_pieces(w) if in_extra else [])
                if not sum(len(p) for p in data):
                    continue
                seq = self.seq[stream]
                self.seq[stream] += 1
                rel = schemas.landing_rel_path(stream, flushed, seq)
                _atomic_bytes(self.landing / rel, data)
                paths[stream][w] = (rel, n_base)
                counts = np.zeros(len(KINDS), dtype=np.int64)
                counts[0] = n_base
                if in_extra:
                    a, b = extra_lines.bounds[w]
                    kinds = extra_lines.frame.get_column("_kind").slice(a, b - a).to_numpy()
                    counts += np.bincount(kinds, minlength=len(KINDS))[: len(KINDS)]
                row = {"stream": stream, "rel_path": rel, "flushed_at_ms": flushed, "seq": seq,
                       "lines": int(counts.sum())}
                row.update({k: int(counts[j]) for j, k in enumerate(KINDS)})
                self.file_rows.append(row)

    def emit(self, i: int, generated: dict, final: bool) -> None:
        """Write the windows of run day ``i`` (and, when ``final``, every window left)."""
        limit = self.last_window + 1 if final else (i + 1) * self.windows_per_day
        t = time.perf_counter()
        prepared: dict[str, tuple[_Lines | None, _Lines | None]] = {}
        next_carry: dict[str, list[pl.DataFrame]] = {}
        for stream in STREAM_NAMES:
            bases, extras = generated.get(stream, ([], []))
            base_lines, extra_lines, carried = self._prepare(stream, bases, extras, limit)
            next_carry[stream] = carried
            prepared[stream] = (base_lines, extra_lines)
        self.carry = next_carry
        t = self._tick("prepare", t)

        # Serialise in a background thread, earliest groups first, while this thread writes the
        # files whose bytes are ready (polars and file writes release the GIL).
        pool = ThreadPoolExecutor(max_workers=1) if SERIALISE_THREAD else None
        jobs = sorted(((lines.frame.get_column("_wts")[g[0]], id(lines), lines, g)
                       for pair in prepared.values() for lines in pair if lines is not None
                       for g in lines.groups), key=lambda j: (j[0], j[1]))
        for _, _, lines, g in jobs:
            if pool is not None:
                lines.futures[g[0]] = pool.submit(lines.serialise, g)

        windows = sorted({w for pair in prepared.values() for lines in pair if lines is not None
                          for w in lines.bounds})
        paths: dict[str, dict[int, tuple[str, int]]] = {s: {} for s in STREAM_NAMES}
        try:
            self._write_windows(windows, prepared, paths)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        t = self._tick("serialise_and_write", t)

        self._record_truth(prepared, paths)
        self._tick("truth_records", t)

    def _record_truth(self, prepared: dict, paths: dict[str, dict[int, tuple[str, int]]]) -> None:
        """Truth for every non-clean record of these windows: the file and line it was written at.
        They all live in the extras, after the window's base lines."""
        for stream, (_, extra_lines) in prepared.items():
            if extra_lines is None:
                continue
            ex = extra_lines.frame
            special = ex.with_row_index("_pos").filter(pl.col("_kind") != 0)
            if not special.height:
                continue
            pos = special.get_column("_pos").to_numpy().astype(np.int64)
            wts = special.get_column("_wts").to_numpy()
            w_of = np.minimum((wts - self.run_start) // self.batch_ms + special.get_column("_delay").to_numpy(),
                              self.last_window)
            rels, lines = [], []
            for p, w in zip(pos.tolist(), w_of.tolist()):
                rel, n_base = paths[stream][w]
                rels.append(rel)
                lines.append(n_base + p - extra_lines.bounds[w][0] + 1)
            self.record_frames.append(special.select(
                stream=pl.lit(stream),
                rel_path=pl.Series(rels, dtype=pl.String),
                line=pl.Series(lines, dtype=pl.Int64),
                event_id=pl.col("event_id"),
                kind=pl.col("_kind"),
                field=pl.col("_field"),
                true_ts_ms=pl.col("_wts"),
                ts_ms=pl.col("ts_ms"),
            ))

    def truth_tables(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        files = pl.DataFrame(self.file_rows) if self.file_rows else pl.DataFrame(
            schema={"stream": pl.String, "rel_path": pl.String, "flushed_at_ms": pl.Int64, "seq": pl.Int64,
                    "lines": pl.Int64, **{k: pl.Int64 for k in KINDS}})
        quarantine = [k for k in KINDS if k not in ("clean", "late", "exact_duplicate")]
        files = files.with_columns(
            valid=pl.col("clean") + pl.col("late"),
            expected_duplicate=pl.col("exact_duplicate"),
            expected_quarantine=pl.sum_horizontal(quarantine),
        )
        schema = {"stream": pl.String, "rel_path": pl.String, "line": pl.Int64, "event_id": pl.String,
                  "kind": pl.UInt8, "field": pl.String, "true_ts_ms": pl.Int64, "ts_ms": pl.Int64}
        recs = pl.concat(self.record_frames, how="vertical") if self.record_frames else pl.DataFrame(schema=schema)
        kind_names = pl.Series(list(KINDS), dtype=pl.String)
        names = kind_names.gather(recs.get_column("kind").cast(pl.Int64).to_numpy())
        field_kinds = list(dirty_mod.FIELD_KINDS)
        recs = recs.with_columns(kind=names).with_columns(
            expected_reason=pl.when(pl.col("kind").is_in(["clean", "late"])).then(pl.lit(None, dtype=pl.String))
            .when(pl.col("kind") == "exact_duplicate").then(pl.lit("duplicate"))
            .when(pl.col("kind").is_in(field_kinds)).then(pl.concat_str([pl.col("kind"), pl.lit(":"), pl.col("field")]))
            .otherwise(pl.col("kind")))
        return files, recs


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that decides what a simulation writes: the defaults live here and only here.

    Same config (and recommender), same bytes. To continue a world, keep seed, users, videos,
    start_date and kuairec_dir, and give a later ``first_day``. ``start_date`` may be given as an ISO string
    and ``kuairec_dir`` as a string; both are normalised, and the values are checked, on creation.
    """

    seed: int = 7
    users: int = 10_000
    videos: int = 20_000
    days: int = 7
    first_day: int = 0  # day 0 is start_date
    events_per_day: int = 300_000  # approximate records a day produces across all streams
    start_date: dt.date = dt.date(2026, 11, 1)
    kuairec_dir: Path | None = None  # real captions/categories from KuaiRec, else generated ones
    batch_minutes: int = 15  # a landing file holds one stream's records of one such window
    dirty_rate: float = 0.01  # share of records that come out dirty, spread over the kinds by dirty_weights
    late_rate: float = 0.005  # share of valid records delivered in a later window's file
    dirty_weights: dict[str, float] | None = None  # None: dirty.DEFAULT_DIRTY_WEIGHTS
    write_truth: bool = True  # truth/ (the answers tests and benchmarks check against)

    def __post_init__(self) -> None:
        if isinstance(self.start_date, str):
            object.__setattr__(self, "start_date", dt.date.fromisoformat(self.start_date))
        if self.kuairec_dir is not None and not isinstance(self.kuairec_dir, Path):
            object.__setattr__(self, "kuairec_dir", Path(self.kuairec_dir))
        if self.days < 1 or self.first_day < 0 or self.events_per_day < 1:
            raise ValueError("days >= 1, first_day >= 0 and events_per_day >= 1 are required")
        if self.batch_minutes < 1 or 1440 % self.batch_minutes:
            raise ValueError("batch_minutes must divide a day (1440 minutes)")
        if not (0 <= self.dirty_rate and 0 <= self.late_rate and self.dirty_rate + self.late_rate < 1):
            raise ValueError("dirty_rate and late_rate must be shares in [0, 1)")
        unknown = set(self.weights) - set(dirty_mod.DIRTY_KINDS)
        if unknown:
            raise ValueError(f"unknown dirty kinds: {sorted(unknown)}")

    @property
    def weights(self) -> dict[str, float]:
        """The dirty kinds' weights, defaults filled in."""
        return dict(dirty_mod.DEFAULT_DIRTY_WEIGHTS if self.dirty_weights is None else self.dirty_weights)

    def world_key(self) -> dict:
        """What truth/world.json records of the world, to refuse mixing two worlds in one out_dir."""
        return {"seed": self.seed, "users": self.users, "videos": self.videos,
                "start_date": self.start_date.isoformat(),
                "catalog_source": "kuairec" if self.kuairec_dir is not None else "generated"}

    def date(self, day: int) -> dt.date:
        return self.start_date + dt.timedelta(days=day)


def simulate(out_dir: str | Path, config: SimulationConfig | None = None, *, recommender=None,
             **overrides) -> SimulationSummary:
    """Simulate days ``first_day .. first_day + days - 1`` of ``config`` into ``out_dir``.

    ``overrides`` are ``SimulationConfig`` fields (``simulate(out, days=2, seed=3)`` is
    ``simulate(out, SimulationConfig(days=2, seed=3))``). ``recommender`` (see
    ``events.Recommender``) serves the For-You personal slots instead of the simulator's own
    choice, so users react to what a model served (the closed loop).
    """
    t0 = time.perf_counter()
    config = replace(config or SimulationConfig(), **overrides)
    out = Path(out_dir)
    runs = _previous_runs(out, config)
    world = build_world(seed=config.seed, users=config.users, videos=config.videos, start_date=config.start_date,
                        kuairec_dir=config.kuairec_dir)
    summary = SimulationSummary(
        out_dir=str(out), seed=config.seed, first_day=config.first_day, days=config.days,
        start_date=config.date(config.first_day).isoformat(),
        end_date=config.date(config.first_day + config.days - 1).isoformat(),
        catalog_source=world.catalog_source,
    )
    summary.catalog_rows = _write_catalog(out, world)
    if config.write_truth:
        _write_world_truth(DataLayout(out).truth, config, world)
    run = _Run(out, world, config, recommender=recommender)
    run.lookback()
    _generate_and_emit(run, config)
    files, recs = run.truth_tables()
    _count(summary, files)
    summary.seconds = round(time.perf_counter() - t0, 3)
    summary.phase_seconds = {k: round(v, 3) for k, v in run.phase.items()}
    if config.write_truth:
        _write_run_truth(DataLayout(out).truth, config, summary, files, recs, runs)
    return summary


def _previous_runs(out: Path, config: SimulationConfig) -> list[dict]:
    """The runs already simulated into ``out`` (truth/runs.json), after checking that ``config``
    continues them: the same world, and days none of them covered. Mixing two worlds or
    simulating a day twice would leave landing files that contradict each other."""
    truth = DataLayout(out).truth
    key = config.world_key()
    world_file, runs_file = truth / "world.json", truth / "runs.json"
    runs = json.loads(runs_file.read_text()) if runs_file.exists() else []
    if world_file.exists():
        prev = json.loads(world_file.read_text())
        if {k: prev.get(k) for k in key} != key:
            raise ValueError(f"{out} holds another world ({ {k: prev.get(k) for k in key} }); refusing to mix")
    first, days = config.first_day, config.days
    for run in runs:
        if first < run["first_day"] + run["days"] and run["first_day"] < first + days:
            raise ValueError(f"days {first}..{first + days - 1} overlap a previous run into {out}: {run}")
    return runs


def _write_catalog(out: Path, world: World) -> dict[str, int]:
    """catalog/{users,creators,videos,campaigns}.parquet (rewritten identically by every run of
    the world); their row counts."""
    catalogs = {"users": world.catalog_users(), "creators": world.catalog_creators(),
                "videos": world.catalog_videos(), "campaigns": world.catalog_campaigns()}
    for name, df in catalogs.items():
        _atomic_parquet(DataLayout(out).catalog / f"{name}.parquet", _catalog_table(name, df))
    return {name: df.height for name, df in catalogs.items()}


def _write_world_truth(truth: Path, config: SimulationConfig, world: World) -> None:
    """truth/world.json (what identifies the world, see ``_previous_runs``) and the videos' latent
    truth."""
    _atomic_bytes(truth / "world.json", json.dumps(
        {**config.world_key(), "categories": list(world.categories), "batch_minutes": config.batch_minutes,
         "kinds": list(KINDS)}, ensure_ascii=False, indent=2).encode())
    _atomic_parquet(truth / "videos.parquet", world.truth_videos())


def _write_day_truth(truth: Path, world: World, date: str, day: int) -> None:
    """truth/user_interests and truth/trending of one day: the latent state the day was drawn from."""
    probs = world.interests(day)
    cats = pl.Series(list(world.categories), dtype=pl.String)
    _atomic_parquet(truth / "user_interests" / f"dt={date}.parquet", pl.DataFrame({
        "user_id": np.arange(1, world.n_users + 1, dtype=np.int64),
        "interest": pl.Series(probs).cast(pl.List(pl.Float32)),
        "top_category": cats.gather(probs.argmax(axis=1)),
    }))
    tags, boost = world.trending(day)
    _atomic_parquet(truth / "trending" / f"dt={date}.parquet", pl.DataFrame({
        "hashtag": pl.Series([world.tag_names[t] for t in tags], dtype=pl.String),
        "boost": pl.Series(boost, dtype=pl.Float64),
    }))


def _generate_and_emit(run: _Run, config: SimulationConfig) -> None:
    """Generate each day and write its windows, in day order. With ``PIPELINE_DAYS`` day i+1 is
    generated in a background thread while day i is written (numpy and polars release the GIL);
    the bytes are the same either way."""
    def generate_day(day: int):
        generated = run.generate(day)
        if config.write_truth:  # here, in the generating thread: the world's interest cache is not shared
            _write_day_truth(DataLayout(run.out).truth, run.world, config.date(day).isoformat(), day)
        return generated

    days, first_day = config.days, config.first_day
    if not PIPELINE_DAYS:
        for i in range(days):
            run.emit(i, generate_day(first_day + i), final=(i == days - 1))
        return
    with ThreadPoolExecutor(max_workers=1) as gen_pool:
        pending = gen_pool.submit(generate_day, first_day)
        for i in range(days):
            generated = pending.result()
            if i + 1 < days:
                pending = gen_pool.submit(generate_day, first_day + i + 1)
            run.emit(i, generated, final=(i == days - 1))


def _count(summary: SimulationSummary, files: pl.DataFrame) -> None:
    """The summary's per-stream and per-kind counts, from the truth's file table."""
    summary.files_written = files.height
    for stream in STREAM_NAMES:
        f = files.filter(pl.col("stream") == stream)
        summary.files_by_stream[stream] = f.height
        summary.lines_by_stream[stream] = int(f["lines"].sum()) if f.height else 0
        summary.valid_by_stream[stream] = int(f["valid"].sum()) if f.height else 0
        summary.late_by_stream[stream] = int(f["late"].sum()) if f.height else 0
    for k in dirty_mod.DIRTY_KINDS:
        summary.dirty_by_kind[k] = int(files[k].sum()) if files.height else 0


def _write_run_truth(truth: Path, config: SimulationConfig, summary: SimulationSummary, files: pl.DataFrame,
                     recs: pl.DataFrame, runs: list[dict]) -> None:
    """truth/runs/<start>_<end>/ (files, records, summary) and the run appended to truth/runs.json,
    last: a run is listed only once its truth is complete."""
    name = f"{summary.start_date}_{summary.end_date}"
    run_dir = truth / "runs" / name
    _atomic_parquet(run_dir / "files.parquet", files)
    _atomic_parquet(run_dir / "records.parquet", recs)
    # without the timing, so the truth is byte-identical for the same arguments too
    stable = {k: v for k, v in summary.to_dict().items()
              if k not in ("seconds", "phase_seconds", "events_per_s", "out_dir")}
    _atomic_bytes(run_dir / "summary.json", json.dumps(stable, indent=2).encode())
    runs = [*runs, {"first_day": config.first_day, "days": config.days, "start_date": summary.start_date,
                    "end_date": summary.end_date, "dir": f"runs/{name}"}]
    _atomic_bytes(truth / "runs.json", json.dumps(runs, indent=2).encode())
