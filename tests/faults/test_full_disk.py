"""A full disk under the lake: the ingest fails cleanly, and once there is room, commits everything once.

The lake lives on a small tmpfs (8 MiB, mounted here as root; skipped where mounting is refused,
unless TIKTOK_CI is set). A filler file leaves a chosen amount of free space, so the batch runs out
while taking the lease or staging one stream or another under ``_staging/<batch>/``; a second, full
tmpfs on a table's ``_delta_log/`` makes it fail with everything staged, at that Delta commit: the
first table's (nothing committed), then the quarantine's (every events table committed, the batch
half done). Each failure must name the cause (errno 28), leave no ingest-log entry, no staged bytes,
no temp file and no data file that no commit names; the batch stays in flight (the lease keeps its
plan) once the lease was taken, and the staging failures commit nothing. Then the same lake, either
copied to a bigger disk or given room in place, finishes that batch and ingests every landing line
exactly once (the undisturbed reference's books: lines read = lake + quarantine + duplicates, equal
counts in each).

On S3 the writer stages its files in a local temp folder before uploading them: that folder on a
full tmpfs fails the batch the same way, leaves the bucket's tables without a row and the folder
empty, and once there is room the batch commits every line once.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.ingest.test_kill9 import _books  # the lake's accounting, read through its Delta tables
from tests.s3 import new_bucket
from tiktok_pipelines.ingest.engine import (
    QUARANTINE_DIR,
    STATE_TABLE,
    IngestSettings,
    Lake,
    audit_batch,
    batch_id_for,
    ingest_files,
    lake_tables,
    table_row_count,
)
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.simulator import simulate

PAGE = 4096  # tmpfs allocates whole pages
# One DuckDB thread: the Parquet files come out byte-identical run after run, so each free-space
# level below runs out in the same place every time.
SETTINGS = IngestSettings(duckdb_threads=1)


def _mount_tmpfs(mnt: Path, size: str) -> None:
    mnt.mkdir(exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], check=False,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        if os.environ.get("TIKTOK_CI"):
            pytest.fail(f"cannot mount a tmpfs in CI: {proc.stderr.strip()}")
        pytest.skip(f"mounting a tmpfs is not permitted here: {proc.stderr.strip()}")


def _leave_free(mnt: Path, free_bytes: int) -> None:
    """Fill the file system with a filler file until exactly ``free_bytes`` (whole pages) are left."""
    filler = mnt / "filler"
    filler.unlink(missing_ok=True)
    st = os.statvfs(mnt)
    avail = st.f_bavail * st.f_frsize
    assert avail >= free_bytes, "the tmpfs is too small for this test"
    with open(filler, "wb") as f:
        # A sparse file takes no pages on tmpfs: write real bytes.
        remaining = avail - free_bytes
        block = b"\0" * (1 << 20)
        while remaining:
            n = min(remaining, len(block))
            f.write(block[:n])
            remaining -= n
    st = os.statvfs(mnt)
    assert st.f_bavail * st.f_frsize == free_bytes


def _pages(root: Path) -> int:
    return sum(-(-p.stat().st_size // PAGE) for p in root.rglob("*") if p.is_file())


def _leftovers(lake: Path) -> list[str]:
    """Anything a failed batch could leave behind to keep the disk full: staged files, temp files
    (``.tmp``, or object_store's ``#n`` names) and data files in a table that its newest version
    does not name (moved in for a commit that never came). ``_ingest_state`` is left out: its
    overwritten files belong to its older versions."""
    store = Lake(lake).store
    named = {t: {os.path.realpath(u.removeprefix("file://")) for u in store.files(t)}
             for t in lake_tables() if t != STATE_TABLE}
    out = []
    for p in lake.rglob("*"):
        rel = p.relative_to(lake).as_posix()
        if not p.is_file() or p.name == "filler":
            continue
        table = next((t for t in named if rel.startswith(t + "/")), None)
        if (rel.startswith("_staging/") or ".tmp" in p.name or "#" in p.name
                or (table and "/_delta_log/" not in rel and os.path.realpath(p) not in named[table])):
            out.append(rel)
    return sorted(out)


def _nothing_committed(lake: Path | str) -> None:
    assert all(table_row_count(lake, t) == 0 for t in lake_tables() if t != STATE_TABLE)


def _fails_cleanly(landing: Path, lake: Path | str, errors: list[str], settings: IngestSettings = SETTINGS) -> None:
    files = list_landing_files(landing)
    with pytest.raises(Exception) as failure:
        ingest_files(files, landing_root=landing, lake_root=lake, settings=settings)
    # A clear error: the cause (errno 28) is in the message, whichever writer hit it.
    assert "No space left on device" in str(failure.value), repr(failure.value)
    staged = re.search(r"(?:_staging/[0-9a-f]+|ingest-[^/]+)/([a-z_]+(?:/[a-z_]+)?)/", str(failure.value))
    in_flight = Lake(lake).state()[1]
    errors.append(f"{type(failure.value).__name__} while "
                  f"{'staging ' + staged.group(1) if staged else 'committing or taking the lease'}"
                  f"{'; batch in flight' if in_flight else ''}")
    # Nothing committed; a batch in flight is these very files.
    _nothing_committed(lake)
    assert in_flight is None or sorted(f["rel_path"] for f in in_flight["files"]) == sorted(f.rel_path for f in files)


def _committed_once(lake: Path | str, landing: Path, expected: dict) -> str:
    """The lake's books equal the reference's, the one batch audits clean, nothing is in flight."""
    assert _books(lake) == expected
    [batch] = {r["batch_id"] for r in Lake(lake).read_ingest_log().to_pylist()}
    assert audit_batch(lake, landing, batch) == []
    assert Lake(lake).state()[1] is None
    return batch


@pytest.mark.slow
def test_full_disk_fails_cleanly_then_every_line_is_committed_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    simulate(data, seed=5, users=300, videos=500, days=1, events_per_day=60_000, start_date="2026-11-01",
             kuairec_dir=None, dirty_rate=0.02, write_truth=False)
    landing = data / "landing"
    files = list_landing_files(landing)
    # The reference: the same files ingested undisturbed on a roomy disk.
    ingest_files(files, landing_root=landing, lake_root=tmp_path / "ref" / "lake", settings=SETTINGS)
    expected = _books(tmp_path / "ref" / "lake")
    assert expected["read"] > 50_000 and expected["quarantine"] > 0 and expected["duplicates"] > 0
    committed_pages = _pages(tmp_path / "ref" / "lake")
    assert committed_pages * PAGE < 6 << 20  # fits the 8 MiB tmpfs once the filler is gone

    mnt = tmp_path / "lakefs"
    _mount_tmpfs(mnt, "8m")
    try:
        lake = mnt / "lake"
        errors: list[str] = []

        def fails_cleanly() -> None:
            _fails_cleanly(landing, lake, errors)
            # No staged bytes, temp or uncommitted files keep the disk full after the failure.
            assert _leftovers(lake) == [], _leftovers(lake)

        # From nearly nothing free to a little short of what the batch writes: the space runs out
        # while taking the lease or staging a different stream each time. (tmpfs counts pages per
        # CPU, so the last pages cannot be aimed at exactly; the commit gets its own full disk below.)
        for free in (16 << 10, 512 << 10, 2 << 20, (committed_pages - 64) * PAGE):
            _leave_free(mnt, free)
            fails_cleanly()
        # Everything staged, then no room for a Delta commit: a table's log on a tmpfs of its own,
        # already full. The first table's: nothing is committed. Then the quarantine's, committed
        # after every events table: the batch is half committed (all its events, no quarantine
        # rows, no ingest-log entry) and stays in flight.
        (mnt / "filler").unlink()
        first = sorted(t for t in lake_tables() if t.startswith("events/"))[0]
        for table in (first, QUARANTINE_DIR):
            delta_log = lake / table / "_delta_log"
            delta_log.parent.mkdir(parents=True, exist_ok=True)
            _mount_tmpfs(delta_log, "4k")
            try:
                _leave_free(delta_log, 0)
                with pytest.raises(Exception) as failure:
                    ingest_files(files, landing_root=landing, lake_root=lake, settings=SETTINGS)
                assert "No space left on device" in str(failure.value), repr(failure.value)
                errors.append(f"{type(failure.value).__name__} while committing {table}")
                assert Lake(lake).state()[1]["batch_id"] == batch_id_for(files)  # in flight
                books = _books(lake)
                assert books["quarantine"] == 0 and books["log_files"] == 0
                assert books["lake"] == (0 if table == first else expected["lake"])
                assert _leftovers(lake) == [], _leftovers(lake)
            finally:
                subprocess.run(["umount", "-l", str(delta_log)], check=False)
            assert not any(delta_log.iterdir())
        print("\n".join(errors))

        # The lake moved to a bigger disk: that copy finishes the batch in flight, exactly once.
        moved = tmp_path / "moved"
        shutil.copytree(lake, moved / "lake")
        report = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=moved / "lake")
        batch = _committed_once(moved / "lake", landing, expected)
        assert batch in report.resumed_batches + [report.batch_id]

        # Or room freed in place: the same.
        report = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
        assert _committed_once(lake, landing, expected) == batch
        assert _leftovers(lake) == []
        # And a rerun changes nothing.
        again = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
        assert again.batch_id is None and again.resumed_batches == [] and _books(lake) == expected
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.slow
def test_a_full_temp_disk_under_an_s3_writer_fails_cleanly_then_every_line_is_committed_once(
        tmp_path: Path, s3_endpoint: str, s3_env, monkeypatch) -> None:
    """The lake on S3, the writer's local temp folder (where it stages its files) on a full tmpfs."""
    data = tmp_path / "data"
    simulate(data, seed=5, users=200, videos=300, days=1, events_per_day=20_000, start_date="2026-11-01",
             kuairec_dir=None, dirty_rate=0.02, write_truth=False)
    landing = data / "landing"
    ref = tmp_path / "ref" / "lake"
    ingest_files(list_landing_files(landing), landing_root=landing, lake_root=ref, settings=SETTINGS)
    expected = _books(ref)
    staged_pages = sum(-(-p.stat().st_size // PAGE) for p in ref.glob("[eq]*/**/*.parquet"))

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    lake = f"s3://{new_bucket(s3_endpoint)}/lake"
    mnt = tmp_path / "tmpfs"
    _mount_tmpfs(mnt, "4m")
    try:
        monkeypatch.setattr(tempfile, "tempdir", str(mnt))  # where the writer stages for S3
        errors: list[str] = []
        for free in (16 << 10, 256 << 10, (staged_pages - 32) * PAGE):
            _leave_free(mnt, free)
            _fails_cleanly(landing, lake, errors)
            assert [p.name for p in mnt.iterdir()] == ["filler"]  # the staged bytes are gone
        print("\n".join(errors))
        (mnt / "filler").unlink()
        report = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake, settings=SETTINGS)
        batch = _committed_once(lake, landing, expected)
        assert report.resumed_batches == [batch]
        assert not any(mnt.iterdir())
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.slow
def test_a_run_that_failed_on_a_full_disk_is_swept_in_once_there_is_room(tmp_path: Path) -> None:
    """The production path of the same fault: the landing sensor's run fails on the full lake disk
    (ENOSPC is not retried), an operator frees space, and nobody runs anything by hand: the
    sensor's sweep asks for the files again and the lake ends with every line once."""
    import dagster as dg

    from tests.dagster.test_sensor import _tick
    from tiktok_pipelines.defs.ingest.assets import ingest_job, ingest_landing
    from tiktok_pipelines.defs.ingest.sensors import landing_sensor
    from tiktok_pipelines.defs.resources import IngestPolicy, PlatformStorage

    data = tmp_path / "data"
    simulate(data, seed=6, users=200, videos=300, days=1, events_per_day=8_000, start_date="2026-11-01",
             kuairec_dir=None, dirty_rate=0.02, write_truth=False)
    landing = data / "landing"
    ingest_files(list_landing_files(landing), landing_root=landing, lake_root=tmp_path / "ref" / "lake",
                 settings=SETTINGS)
    expected = _books(tmp_path / "ref" / "lake")

    # No grace window (a file at the mark is behind it) and a sweep on every tick after the first.
    mnt = tmp_path / "lakefs"
    policy = IngestPolicy(files_per_run=1_000, sensor_grace_s=0, sensor_sweep_s=0.001, duckdb_threads=1)
    defs = dg.Definitions(assets=[ingest_landing], jobs=[ingest_job], sensors=[landing_sensor],
                          resources={"storage": PlatformStorage(data_dir=str(data), lake_dir=str(mnt / "lake")),
                                     "ingest_policy": policy})
    job = defs.resolve_job_def("ingest_job")
    _mount_tmpfs(mnt, "8m")
    try:
        with dg.instance_for_test() as instance:
            requests, cursor, _ = _tick(defs, instance, None)
            assert len(requests) == 1 and "landing/sweep" not in requests[0].tags
            _leave_free(mnt, 16 << 10)
            failed = job.execute_in_process(run_config=requests[0].run_config, instance=instance,
                                            raise_on_error=False)
            assert not failed.success
            errors = [e.event_specific_data.error.to_string() for e in failed.all_events if e.is_step_failure]
            assert any("No space left on device" in err for err in errors), errors
            _nothing_committed(mnt / "lake")
            assert _leftovers(mnt / "lake") == []

            (mnt / "filler").unlink()  # room again; no manual run follows
            requests, cursor, _ = _tick(defs, instance, cursor)
            assert len(requests) == 1 and requests[0].tags["landing/sweep"] == "1"
            assert job.execute_in_process(run_config=requests[0].run_config, instance=instance).success
            assert _books(mnt / "lake") == expected
            assert _leftovers(mnt / "lake") == []
            assert _tick(defs, instance, cursor)[0] == []  # and the sweep after that finds nothing left
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
