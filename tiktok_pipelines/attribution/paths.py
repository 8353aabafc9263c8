"""Aggregated journeys ("paths") and the ChannelAttribution path file format.

A :class:`Paths` holds distinct channel sequences with how many journeys that followed each one
converted (``conversions``), what they were worth (``value``) and how many did not convert
(``nulls``), as flat NumPy arrays in CSR layout: the channels of path ``i`` are
``touches[offsets[i]:offsets[i + 1]]`` (indices into ``channels``). Every model in this package
works on these arrays without a Python loop per path.

File format (the R package ChannelAttribution's ``PathData``, as analysts export it)::

    path;total_conversions;total_conversion_value;total_null
    google_ads > mailing;1;35.5;0
    google_ads;2;60;1

One header line naming the columns (``path`` and ``total_conversions`` are required,
``total_conversion_value`` and ``total_null`` default to 0 when the header omits them), ``;`` between
fields, ``>`` between touches, whitespace around channel names stripped, blank lines skipped,
identical paths summed; value without conversions is refused (value rides on conversions).
A bad line raises :class:`PathFormatError` naming the file and line number.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REQUIRED_COLUMNS = ("path", "total_conversions")
OPTIONAL_COLUMNS = ("total_conversion_value", "total_null")


class PathFormatError(ValueError):
    """A path file that does not follow the format; the message starts with ``FILE:LINE:``."""


@dataclass(frozen=True)
class Paths:
    channels: tuple[str, ...]
    touches: np.ndarray  # int64 channel index per touch, paths concatenated
    offsets: np.ndarray  # int64, len = n_paths + 1
    conversions: np.ndarray  # float64 per path
    value: np.ndarray  # float64 per path
    nulls: np.ndarray  # float64 per path

    def __post_init__(self) -> None:
        n = len(self.offsets) - 1
        if n < 0 or self.offsets[0] != 0 or self.offsets[-1] != len(self.touches):
            raise ValueError("offsets must start at 0 and end at len(touches)")
        if n and np.any(np.diff(self.offsets) < 1):
            raise ValueError("every path needs at least one touch")
        for name in ("conversions", "value", "nulls"):
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise ValueError(f"{name} must have one entry per path")
            if np.any(arr < 0) or not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} must be finite and non-negative")
        if np.any((self.value > 0) & (self.conversions == 0)):
            # value is what conversions were worth: without one it has nothing to ride on
            raise ValueError("a path has conversion value but no conversions")

    @property
    def n_paths(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def path_of_touch(self) -> np.ndarray:
        """The path index of every touch."""
        return np.repeat(np.arange(self.n_paths), self.lengths)

    @property
    def total_conversions(self) -> float:
        return float(self.conversions.sum())

    @property
    def total_value(self) -> float:
        return float(self.value.sum())

    def sequences(self) -> list[list[str]]:
        names = np.asarray(self.channels, dtype=object)
        return [list(names[self.touches[a:b]]) for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    @classmethod
    def from_sequences(
        cls,
        sequences: Iterable[Sequence[str]],
        conversions: Iterable[float],
        value: Iterable[float] | None = None,
        nulls: Iterable[float] | None = None,
    ) -> Paths:
        """Paths from channel-name sequences; channels are numbered in sorted name order."""
        seqs = [list(s) for s in sequences]
        conv = np.asarray(list(conversions), dtype=np.float64)
        n = len(seqs)
        val = np.zeros(n) if value is None else np.asarray(list(value), dtype=np.float64)
        nul = np.zeros(n) if nulls is None else np.asarray(list(nulls), dtype=np.float64)
        channels = tuple(sorted({c for s in seqs for c in s}))
        index = {c: i for i, c in enumerate(channels)}
        touches = np.fromiter((index[c] for s in seqs for c in s), dtype=np.int64)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([len(s) for s in seqs], out=offsets[1:])
        return cls(channels, touches, offsets, conv, val, nul)

    def aggregated(self) -> Paths:
        """Identical channel sequences merged (their counts summed); path order becomes sorted."""
        keys = [tuple(s) for s in self.sequences()]
        merged: dict[tuple[str, ...], np.ndarray] = {}
        for k, c, v, z in zip(keys, self.conversions, self.value, self.nulls):
            acc = merged.setdefault(k, np.zeros(3))
            acc += (c, v, z)
        items = sorted(merged.items())
        return Paths.from_sequences([k for k, _ in items], [a[0] for _, a in items],
                                    [a[1] for _, a in items], [a[2] for _, a in items])

    def collapsed(self) -> Paths:
        """The same paths with consecutive repeats of one channel collapsed (``A>A>B`` -> ``A>B``)."""
        keep = np.ones(len(self.touches), dtype=bool)
        keep[1:] = self.touches[1:] != self.touches[:-1]
        keep[self.offsets[:-1]] = True  # a path's first touch always stays
        new_lengths = np.add.reduceat(keep.astype(np.int64), self.offsets[:-1]) if self.n_paths else np.zeros(0, np.int64)
        offsets = np.zeros(self.n_paths + 1, dtype=np.int64)
        np.cumsum(new_lengths, out=offsets[1:])
        return Paths(self.channels, self.touches[keep], offsets, self.conversions, self.value, self.nulls)


def _number(text: str, column: str, where: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise PathFormatError(f"{where}: {column} is not a number: {text.strip()!r}") from None
    if not np.isfinite(x) or x < 0:
        raise PathFormatError(f"{where}: {column} must be a finite non-negative number, got {text.strip()!r}")
    return x


def parse_paths(lines: Iterable[str], source: str = "<paths>") -> Paths:
    """Parse ChannelAttribution path lines (header first). Identical paths are summed."""
    header: list[str] | None = None
    col: dict[str, int] = {}
    acc: dict[tuple[str, ...], list[float]] = {}
    for lineno, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        where = f"{source}:{lineno}"
        fields = line.split(";")
        if header is None:
            header = [f.strip().lower() for f in fields]
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
            if missing or unknown or len(set(header)) != len(header):
                raise PathFormatError(
                    f"{where}: header must name the columns path;total_conversions"
                    f"[;total_conversion_value][;total_null] separated by ';', got {line.strip()!r}")
            col = {c: header.index(c) for c in header}
            continue
        if len(fields) != len(header):
            raise PathFormatError(f"{where}: expected {len(header)} fields separated by ';', got {len(fields)}")
        channels = tuple(c.strip() for c in fields[col["path"]].split(">"))
        if any(not c for c in channels):
            raise PathFormatError(f"{where}: empty channel name in path {fields[col['path']].strip()!r}")
        conv = _number(fields[col["total_conversions"]], "total_conversions", where)
        val = _number(fields[col["total_conversion_value"]], "total_conversion_value", where) \
            if "total_conversion_value" in col else 0.0
        nul = _number(fields[col["total_null"]], "total_null", where) if "total_null" in col else 0.0
        if val > 0 and conv == 0:
            raise PathFormatError(f"{where}: total_conversion_value {val:g} with no conversions")
        a = acc.setdefault(channels, [0.0, 0.0, 0.0])
        a[0] += conv
        a[1] += val
        a[2] += nul
    if header is None:
        raise PathFormatError(f"{source}:1: empty file (expected a header line path;total_conversions;...)")
    items = list(acc.items())
    return Paths.from_sequences([k for k, _ in items], [a[0] for _, a in items],
                                [a[1] for _, a in items], [a[2] for _, a in items])


def read_paths(path: Path | str) -> Paths:
    """Read a ChannelAttribution path file (UTF-8, optional BOM)."""
    p = Path(path)
    with p.open(encoding="utf-8-sig") as f:
        return parse_paths(f, source=str(p))
