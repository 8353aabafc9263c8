"""MovieLens-format files with MovieLens-like structure, for tests and for trying the experiment
command without the real data (which is not on these machines; others check it on the real files).

What makes real MovieLens hard for a ranker, reproduced here so a model that only works on easy
data fails here too:

- users arrive over the whole period and rate most of their movies in their first sessions, so a
  time-ordered split evaluates mostly on users the training data never saw;
- item popularity is heavy-tailed (Zipf) and correlated with quality;
- ratings = global mean + user bias + item bias + taste . features + noise, cut into 1..5 stars
  at thresholds that give MovieLens-100K's star shares (6/11/27/34/21 %), so "rating >= 4" is ~55 %;
- several ratings share one second (a user rating a page of movies).

``write_movielens_like(dir, fmt="movielens-100k")`` writes ``u.data``, ``u.item`` and ``u.user``
exactly as GroupLens documents them; ``fmt="ml-latest-small"`` writes ``ratings.csv``,
``movies.csv`` and ``tags.csv``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from tiktok_pipelines.experiments.movielens import ML100K_GENRES

STAR_SHARES = (0.06, 0.11, 0.27, 0.34, 0.22)
START_S = 874_724_710  # 1997-09-20, MovieLens-100K's first rating


def _ratings(rng: np.random.Generator, users: int, items: int, ratings: int, span_days: int, dim: int):
    pop = 1.0 / np.arange(1, items + 1) ** 0.9
    rng.shuffle(pop)
    item_bias = 0.35 * np.log(pop / pop.mean()) / np.log(pop).std() + rng.normal(0, 0.5, items)
    user_bias = rng.normal(0, 0.5, users)
    taste, feat = rng.normal(0, 0.45, (users, dim)), rng.normal(0, 0.45, (items, dim))
    arrival = START_S + np.sort(rng.uniform(0, span_days * 86_400 * 0.95, users)).astype(np.int64)
    per_user = np.maximum(20, rng.lognormal(np.log(ratings / users) - 0.5, 1.0, users)).astype(int)
    per_user = np.maximum(20, (per_user * ratings / per_user.sum()).astype(int))
    end = START_S + span_days * 86_400
    rows = []
    for u in range(users):
        n = min(int(per_user[u]), items)
        chosen = rng.choice(items, size=n, replace=False, p=pop / pop.sum())
        # most ratings in the first session (minutes), a few in later visits (days to months)
        later = rng.random(n) < 0.2
        offsets = np.where(later, rng.exponential(30 * 86_400, n), rng.exponential(600, n)).astype(np.int64)
        ts = np.minimum(arrival[u] + (offsets // 7) * 7, end)  # pages of ratings share a second
        z = user_bias[u] + item_bias[chosen] + feat[chosen] @ taste[u] + rng.normal(0, 0.8, n)
        rows.append(np.stack([np.full(n, u + 1), chosen + 1, ts, np.zeros(n)], axis=1).astype(np.float64))
        rows[-1][:, 3] = z
    out = np.concatenate(rows)
    cuts = np.quantile(out[:, 3], np.cumsum(STAR_SHARES)[:-1])
    stars = 1 + np.searchsorted(cuts, out[:, 3])
    return out[:, 0].astype(int), out[:, 1].astype(int), stars, out[:, 2].astype(np.int64)


def write_movielens_like(directory: str | Path, *, fmt: str = "movielens-100k", users: int = 943,
                         items: int = 1682, ratings: int = 100_000, span_days: int = 215, seed: int = 0) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    u, i, stars, ts = _ratings(rng, users, items, ratings, span_days, dim=8)
    genres = [sorted(set(rng.choice(np.arange(1, len(ML100K_GENRES)), size=rng.integers(1, 4)).tolist()))
              for _ in range(items)]
    if fmt == "movielens-100k":
        order = rng.permutation(len(u))  # u.data is not in time order
        (d / "u.data").write_text("".join(f"{u[k]}\t{i[k]}\t{stars[k]}\t{ts[k]}\n" for k in order))
        (d / "u.user").write_text("".join(f"{x}|{rng.integers(18, 70)}|{'MF'[x % 2]}|other|55105\n"
                                          for x in range(1, users + 1)))
        lines = []
        for x in range(1, items + 1):
            flags = ["0"] * len(ML100K_GENRES)
            for g in genres[x - 1]:
                flags[g] = "1"
            lines.append(f"{x}|Film {x} (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Film%20{x}|"
                         + "|".join(flags))
        (d / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    elif fmt == "ml-latest-small":
        order = np.lexsort((i, u))  # ratings.csv is ordered by userId, then movieId
        with open(d / "ratings.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["userId", "movieId", "rating", "timestamp"])
            half = rng.random(len(u)) < 0.3  # half stars exist in this format
            for k in order:
                r = float(stars[k]) - (0.5 if half[k] and stars[k] > 1 else 0.0)
                w.writerow([u[k], i[k] * 7, f"{r:.1f}", ts[k]])  # movieIds are sparse there
        with open(d / "movies.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["movieId", "title", "genres"])
            for x in range(1, items + 1):
                names = [ML100K_GENRES[g] for g in genres[x - 1]]
                w.writerow([x * 7, f"Film {x}, The (1995)", "|".join(names) or "(no genres listed)"])
        with open(d / "tags.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["userId", "movieId", "tag", "timestamp"])
            for k in rng.choice(len(u), size=min(len(u), 500), replace=False):
                w.writerow([u[k], i[k] * 7, rng.choice(["funny", "dark", "classic", "twist ending"]), ts[k]])
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return d
