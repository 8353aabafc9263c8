"""MovieLens in our example schema, so Monolith's experiments (a) and (b) run on real data.

Two formats, detected from the files in the directory the user gives:

- **MovieLens-100K**: ``u.data`` (user, item, rating, timestamp; tab-separated), ``u.user``
  (id|age|gender|occupation|zip), ``u.item`` (id|title|release date|video release|url|19 genre
  flags; latin-1).
- **ml-latest-small**: ``ratings.csv`` (userId,movieId,rating,timestamp), ``movies.csv``
  (movieId,title,genres separated by ``|``), ``tags.csv`` (userId,movieId,tag,timestamp).

Mapping: a rating is an impression of the movie (``video_id``) to the user at the rating time,
with ``engaged`` = rating >= 4. The movie's first genre stands in for its creator
(``creator_id``: the second tower adds a shared genre vector, as a creator's does for videos);
genres and tags become ``hashtags``. MovieLens carries none of the served features, so those
columns are empty (read as zeros), apart from ``hour_of_day``. Nothing is downsampled
(``sample_rate`` = 1).
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa

from tiktok_pipelines.training.features import (
    BOOL_FEATURES,
    CATEGORICAL_FEATURES,
    LOG_FEATURES,
    PLAIN_FEATURES,
)

ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western")


def detect_format(directory: Path) -> str:
    if (directory / "u.data").exists():
        return "movielens-100k"
    if (directory / "ratings.csv").exists():
        return "ml-latest-small"
    raise FileNotFoundError(f"{directory}: neither u.data (MovieLens-100K) nor ratings.csv (ml-latest-small)")


def _read_100k(d: Path) -> tuple[list[tuple[int, int, float, int]], dict[int, list[str]]]:
    ratings = []
    with open(d / "u.data", encoding="latin-1") as f:
        for line in f:
            if line.strip():
                u, i, r, t = line.split("\t")
                ratings.append((int(u), int(i), float(r), int(t)))
    genres: dict[int, list[str]] = {}
    if (d / "u.item").exists():
        with open(d / "u.item", encoding="latin-1") as f:
            for line in f:
                parts = line.rstrip("\n").split("|")
                if len(parts) >= 5 + len(ML100K_GENRES):
                    flags = parts[-len(ML100K_GENRES):]
                    genres[int(parts[0])] = [g for g, flag in zip(ML100K_GENRES, flags) if flag == "1"]
    return ratings, genres


def _read_latest_small(d: Path) -> tuple[list[tuple[int, int, float, int]], dict[int, list[str]]]:
    with open(d / "ratings.csv", newline="", encoding="utf-8") as f:
        ratings = [(int(r["userId"]), int(r["movieId"]), float(r["rating"]), int(r["timestamp"]))
                   for r in csv.DictReader(f)]
    genres: dict[int, list[str]] = {}
    if (d / "movies.csv").exists():
        with open(d / "movies.csv", newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                g = r["genres"]
                genres[int(r["movieId"])] = [] if g == "(no genres listed)" else g.split("|")
    if (d / "tags.csv").exists():
        with open(d / "tags.csv", newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                genres.setdefault(int(r["movieId"]), []).append("#" + r["tag"].strip().lower())
    return ratings, genres


def read_movielens(directory: str | Path) -> tuple[str, pa.Table]:
    """(format, examples in time order) for a MovieLens directory."""
    d = Path(directory)
    fmt = detect_format(d)
    ratings, tags = _read_100k(d) if fmt == "movielens-100k" else _read_latest_small(d)
    if not ratings:
        raise ValueError(f"{d}: no ratings")
    ratings.sort(key=lambda r: (r[3], r[0], r[1]))
    genre_ids: dict[str, int] = {}
    users = np.array([r[0] for r in ratings], dtype=np.int64)
    items = np.array([r[1] for r in ratings], dtype=np.int64)
    ts_s = np.array([r[3] for r in ratings], dtype=np.int64)

    def primary_genre(movie: int) -> int:
        names = [t for t in tags.get(movie, []) if not t.startswith("#")]
        return genre_ids.setdefault(names[0], len(genre_ids) + 1) if names else 0

    n = len(ratings)
    columns: dict[str, pa.Array] = {
        "example_id": pa.array([f"ml-{u}-{i}-{t}" for u, i, t in zip(users, items, ts_s)]),
        "ts_ms": pa.array(ts_s * 1000),
        "event_date": pa.array([dt.datetime.fromtimestamp(int(t), dt.timezone.utc).date() for t in ts_s]),
        "user_id": pa.array(users),
        "video_id": pa.array(items),
        "creator_id": pa.array(np.array([primary_genre(int(i)) for i in items], dtype=np.int64)),
        "hashtags": pa.array([tags.get(int(i), []) for i in items], pa.list_(pa.string())),
        "rating": pa.array([r[2] for r in ratings]),
        "engaged": pa.array(np.array([r[2] >= 4 for r in ratings])),
        "sample_rate": pa.array(np.ones(n)),
        "hour_of_day": pa.array((ts_s % 86_400) // 3_600),
    }
    for name in LOG_FEATURES + PLAIN_FEATURES:
        if name not in columns:
            columns[name] = pa.nulls(n, pa.float64())
    for name in BOOL_FEATURES:
        columns[name] = pa.nulls(n, pa.float64())  # features read every numeric column as float
    for name in CATEGORICAL_FEATURES:
        columns[name] = pa.nulls(n, pa.string())
    return fmt, pa.table(columns)


def time_split(examples: pa.Table, train_fraction: float) -> tuple[pa.Table, pa.Table, int]:
    """The first ``train_fraction`` of the examples by time, the rest; and the cut (epoch ms)."""
    if not 0 < train_fraction < 1:
        raise ValueError("train_fraction must be in (0, 1)")
    cut_index = int(examples.num_rows * train_fraction)
    cut_ms = int(examples.column("ts_ms")[cut_index].as_py())
    ts = examples.column("ts_ms").to_numpy()
    first_eval = int(np.searchsorted(ts, cut_ms, side="left"))  # ties stay together
    return examples.slice(0, first_eval), examples.slice(first_eval), cut_ms
