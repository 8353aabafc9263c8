"""Issue 15, finding 1, end to end: one landing file named and dated 2099 must not empty the model.

Reproduced before the fix: a file ``views-20991231T000000Z-….ndjson`` holding one event dated 2099
passed validation (its flush time came from its name), moved the online watermark to 2099, and
the next online update published a delta with ``trained_through_ms`` in 2099 whose expiry deleted
every user, video and creator row; every server then answered ``"items": []`` and /healthz said ok.
Now: the file is quarantined with its reason, the update trains on day 2 as if it were not there,
and a server serves the result.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb

from tests.training.batch_model import day_one_published
from tiktok_pipelines.ingest.engine import QUARANTINE_DIR, events_table, ingest_files, table_source
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.serving.server import ModelServer
from tiktok_pipelines.serving.store import load_latest
from tiktok_pipelines.training.joiner import JoinerConfig
from tiktok_pipelines.training.online import online_update

CONFIG = JoinerConfig(negative_rate=0.5)
Y2099_MS = int(dt.datetime(2099, 12, 31, tzinfo=dt.timezone.utc).timestamp() * 1000)


def test_a_file_dated_2099_is_quarantined_and_the_model_keeps_serving(tmp_path: Path) -> None:
    landing, lake, serving, files, through = day_one_published(tmp_path, CONFIG, seed=3, users=200, videos=400,
                                                               events_per_day=12_000)
    day1 = load_latest(serving)
    rows_before = {slot: len(t) for slot, t in day1.tables.items()}
    # a collector (or an attacker) drops one file named and dated 2099, beside day 2's files
    bad = landing / "views" / "dt=2099-12-31" / "views-20991231T000000Z-000001.ndjson"
    bad.parent.mkdir(parents=True)
    event = {"event_id": "from-2099", "ts_ms": Y2099_MS, "user_id": 1, "video_id": 1, "creator_id": 1,
             "watch_time_ms": 1000, "video_duration_ms": 10_000, "request_id": None}
    bad.write_text(json.dumps(event) + "\n")
    day2 = [f for f in list_landing_files(landing) if "/dt=2026-11-02/" in f.rel_path or "2099" in f.rel_path]
    report = ingest_files(day2, landing_root=landing, lake_root=lake)
    assert report.batch_id is not None  # the valid files of the batch committed

    con = duckdb.connect()  # the committed rows, through the tables' Delta snapshots
    views = table_source(con, lake, events_table("views"))
    assert con.sql(f"SELECT count(*) FROM {views} WHERE ts_ms >= {Y2099_MS}").fetchall()[0][0] == 0
    q = con.sql(f"SELECT reason FROM {table_source(con, lake, QUARANTINE_DIR)} WHERE src_file LIKE '%2099%'").fetchall()
    con.close()
    assert q and all(r[0] for r in q), q  # quarantined, with a reason

    update = online_update(lake, serving, CONFIG)
    assert update.published_seq == 2, update.reason
    assert update.trained_through_ms < int(dt.datetime(2026, 11, 3, tzinfo=dt.timezone.utc).timestamp() * 1000)
    state = load_latest(serving)
    for slot, n in rows_before.items():
        assert len(state.tables[slot]) >= n * 0.9, (slot, len(state.tables[slot]), n)  # nothing mass-expired

    server = ModelServer(serving, catalog_dir=tmp_path / "catalog")
    assert server.state.seq == 2 and server.health()["status"] == "ok", server.health()
    users = state.tables["user_id"]
    user = int(users.row_state(users.live_rows()[:1])["id"][0])
    assert len(server.recommend(user, 10)["items"]) == 10
