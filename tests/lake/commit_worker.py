"""A writer process for tests/lake/test_tables.py: commits batches to one table.

    python -m tests.lake.commit_worker ROOT ENDPOINT TABLE WRITER BATCH [BATCH ...]

Each BATCH is committed as 10 rows named by it, with transaction id ``ingest:BATCH``; it prints
``committed BATCH`` or ``skipped BATCH`` per batch.
"""

from __future__ import annotations

import sys
import zlib

import pyarrow as pa

from tiktok_pipelines.tables import TableStore


def rows(batch: str, writer: str) -> pa.Table:
    return pa.table({"event_id": [f"{batch}-{i}" for i in range(10)], "writer": [writer] * 10,
                     "event_date": ["2026-11-0" + str(1 + zlib.crc32(batch.encode()) % 3)] * 10})


def main(root: str, endpoint: str, table: str, writer: str, batches: list[str]) -> None:
    store = TableStore.from_config(root, endpoint_url=endpoint or None)
    for b in batches:
        v = store.commit(table, rows(b, writer), txn=f"ingest:{b}", partition_by=["event_date"])
        print(("committed" if v is not None else "skipped"), b, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
