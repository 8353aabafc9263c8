"""The MovieLens adapter on tiny files in both formats, and the experiment command on them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tiktok_pipelines.cli import main
from tiktok_pipelines.experiments.movielens import ML100K_GENRES, detect_format, read_movielens, time_split


def write_100k(d: Path, n: int = 3000) -> None:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    taste, feat = rng.normal(size=(40, 3)), rng.normal(size=(50, 3))
    rows = []
    for k in range(n):
        u, i = int(rng.integers(1, 41)), int(rng.integers(1, 51))
        r = int(np.clip(np.round(3 + taste[u - 1] @ feat[i - 1]), 1, 5))
        rows.append(f"{u}\t{i}\t{r}\t{881_000_000 + 900 * k}")
    (d / "u.data").write_text("\n".join(rows) + "\n")
    (d / "u.user").write_text("".join(f"{u}|30|F|writer|55105\n" for u in range(1, 41)))
    items = []
    for i in range(1, 51):
        flags = ["0"] * len(ML100K_GENRES)
        flags[5 if i % 2 else 8] = "1"  # Comedy or Drama
        items.append(f"{i}|Amélie {i} (2001)|01-Jan-2001||http://x|" + "|".join(flags))
    (d / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))


def write_latest_small(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,10,4.5,1000\n2,10,2.0,1100\n1,20,3.5,1200\n"
                                   "3,20,5.0,1300\n3,30,4.0,1400\n")
    (d / "movies.csv").write_text('movieId,title,genres\n10,"Heat (1995)",Action|Crime|Thriller\n'
                                  "20,Toy Story (1995),Animation|Children\n30,Odd (2000),(no genres listed)\n")
    (d / "tags.csv").write_text("userId,movieId,tag,timestamp\n1,10,Classic ,1050\n")


def test_movielens_100k_maps_to_examples(tmp_path) -> None:
    write_100k(tmp_path / "ml")
    fmt, ex = read_movielens(tmp_path / "ml")
    assert fmt == "movielens-100k" and ex.num_rows == 3000
    ts = ex.column("ts_ms").to_numpy()
    assert np.all(np.diff(ts) >= 0)
    first = ex.slice(0, 1).to_pylist()[0]
    assert first["hashtags"] in (["Comedy"], ["Drama"]) and first["creator_id"] in (1, 2)
    assert first["engaged"] == (first["rating"] >= 4) and first["sample_rate"] == 1.0
    train, evaluation, cut = time_split(ex, 0.8)
    assert train.num_rows + evaluation.num_rows == 3000
    assert train.column("ts_ms").to_numpy().max() < cut <= evaluation.column("ts_ms").to_numpy().min()


def test_ml_latest_small_genres_and_tags_become_hashtags(tmp_path) -> None:
    write_latest_small(tmp_path / "ml")
    assert detect_format(tmp_path / "ml") == "ml-latest-small"
    _, ex = read_movielens(tmp_path / "ml")
    rows = ex.to_pylist()
    assert [r["video_id"] for r in rows] == [10, 10, 20, 20, 30]  # time order
    assert rows[0]["hashtags"] == ["Action", "Crime", "Thriller", "#classic"]
    assert rows[4]["hashtags"] == [] and rows[4]["creator_id"] == 0
    assert [r["engaged"] for r in rows] == [True, False, False, True, True]
    assert rows[0]["creator_id"] != rows[2]["creator_id"]  # Action vs Animation


def test_unknown_directory_is_refused(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="u.data"):
        detect_format(tmp_path)


def test_experiment_command_on_movielens(tmp_path, capsys) -> None:
    write_100k(tmp_path / "ml")
    assert main(["experiment", "--movielens", str(tmp_path / "ml"), "--dim", "4", "--seeds", "2",
                 "--sync-interval", "86400", "--sync-interval", "3600"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert result["dataset"] == "movielens-100k" and result["sync_interval_s"] == 3_600
    assert result["sync_intervals_s"] == [86_400, 3_600] and result["seeds"] == [0, 1]
    keys = ("auc_popularity", "auc_mf", "auc_batch", "auc_online", "auc_collisionless", "auc_hashing")
    for key in keys:
        assert 0 < result[key] < 1, key
        assert result["std"][key] >= 0, key
    assert result["auc_collisionless"] == result["auc_batch"]  # same model, data and seeds
    assert result["auc_online"] == result["auc_online_by_sync"]["every_3600s"]  # the shortest interval
    assert set(result["hashing_collision_rate"]) == {"user_id", "video_id"}
    assert result["split"]["train_examples"] == 2400
    assert set(result["verdict"]) >= {"batch_vs_best_baseline", "online_vs_batch", "collisionless_vs_hashing"}
    assert any(line.startswith("| item popularity (baseline) |") for line in out)
