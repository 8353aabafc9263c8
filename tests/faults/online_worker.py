"""The process test_kill_online.py kills: what the ingest and online-update sensors do, in a loop.

    python -m tests.faults.online_worker DATA_DIR END_MS [END_MS ...]

For each slice end (a flush time), ingest the landing files flushed up to it (files already in the
ingest log are skipped), then run one online update. It prints ``update <end>`` just before each
update and ``done <seq>`` after it, so the test can aim its kill -9 at an update. Rerun after a kill,
it picks up where the lake and the serving directory stand. The lake is ``DATA_DIR/lake``, or
``ONLINE_WORKER_LAKE`` when set (an ``s3://`` URI: the lake in a bucket).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tiktok_pipelines.ingest.engine import ingest_files
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.training.joiner import JoinerConfig
from tiktok_pipelines.training.online import online_update

CONFIG = JoinerConfig(negative_rate=0.5)
DENSE_EVERY_S = 3600  # dense weights every hour of event time: every second 30-minute slice
FULL_EVERY = 4  # and a full version every fourth: the kills hit all three kinds of publication
KEEP_FULL = 1000  # keep every version, so the test can check each one's training window


def main(data: Path, ends: list[int]) -> None:
    landing, serving = data / "landing", data / "serving"
    lake = os.environ.get("ONLINE_WORKER_LAKE") or data / "lake"
    for end in ends:
        files = [f for f in list_landing_files(landing) if f.flushed_at_ms <= end]
        ingest_files(files, landing_root=landing, lake_root=lake)
        print(f"update {end}", flush=True)
        report = online_update(lake, serving, CONFIG, dense_every_s=DENSE_EVERY_S, full_every=FULL_EVERY,
                               keep_full=KEEP_FULL, batch_size=64)
        print(f"done {report.published_seq}", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), [int(x) for x in sys.argv[2:]])
