"""A full disk under the lake: the ingest fails cleanly, and once there is room, commits everything once.

The lake lives on a small tmpfs (8 MiB, mounted here as root; skipped where mounting is refused,
unless TIKTOK_CI is set). A filler file leaves a chosen amount of free space, so the batch runs out
while staging one stream or another; a second, full tmpfs on ``_pending/`` makes it fail with
everything staged, writing the pending manifest. Each failure must name the cause (errno 28), leave
no commit record, no staged bytes and no temp file; then the same lake, either copied to a bigger
disk or given room in place, ingests every landing line exactly once (the undisturbed reference's
books: lines read = lake + quarantine + duplicates, equal counts in each).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import tests.ingest.test_kill9 as kill9_test  # _books: the lake's accounting, counted from disk
from tiktok_pipelines.ingest.engine import IngestSettings, audit_batch, ingest_files
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
    """Anything a failed batch could leave behind: staged files, temp files, pending manifests."""
    out = []
    for p in lake.rglob("*"):
        rel = p.relative_to(lake).as_posix()
        if p.is_file() and p.name != "filler" and (rel.startswith(("_staging/", "_pending/")) or ".tmp" in p.name):
            out.append(rel)
    return sorted(out)


@pytest.mark.slow
def test_full_disk_fails_cleanly_then_every_line_is_committed_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    simulate(data, seed=5, users=300, videos=500, days=1, events_per_day=60_000, start_date="2026-11-01",
             kuairec_dir=None, dirty_rate=0.02, write_truth=False)
    landing = data / "landing"
    files = list_landing_files(landing)
    # The reference: the same files ingested undisturbed on a roomy disk.
    ingest_files(files, landing_root=landing, lake_root=tmp_path / "ref" / "lake", settings=SETTINGS)
    expected = kill9_test._books(tmp_path / "ref")
    assert expected["read"] > 50_000 and expected["quarantine"] > 0 and expected["duplicates"] > 0
    committed_pages = _pages(tmp_path / "ref" / "lake")
    assert committed_pages * PAGE < 6 << 20  # fits the 8 MiB tmpfs once the filler is gone

    mnt = tmp_path / "lakefs"
    _mount_tmpfs(mnt, "8m")
    try:
        lake = mnt / "lake"
        errors = []

        def fails_cleanly() -> None:
            with pytest.raises(Exception) as failure:
                ingest_files(files, landing_root=landing, lake_root=lake, settings=SETTINGS)
            # A clear error: the cause (errno 28) is in the message, whichever writer hit it.
            assert "No space left on device" in str(failure.value), repr(failure.value)
            staged = re.search(r"_staging/[0-9a-f]+/([^\"]+?)/part-", str(failure.value))
            errors.append(f"{type(failure.value).__name__} while writing "
                          f"{staged.group(1) if staged else 'the pending manifest'}")
            # Nothing committed, and no staged bytes keep the disk full after the failure.
            assert not list((lake / "ingest_log").glob("*.parquet"))
            assert not list(lake.glob("events/*/*/*.parquet")) and not list(lake.glob("quarantine/*"))
            assert _leftovers(lake) == [], _leftovers(lake)

        # From nearly nothing free to a little short of what the batch writes: the space runs out
        # while staging a different stream each time. (tmpfs counts pages per CPU, so the last
        # pages cannot be aimed at exactly; the pending manifest gets its own full disk below.)
        for free in (16 << 10, 512 << 10, 2 << 20, (committed_pages - 64) * PAGE):
            _leave_free(mnt, free)
            fails_cleanly()
        # Everything staged, then no room for the pending manifest (the step before any rename):
        # _pending/ on a tmpfs of its own, already full.
        (mnt / "filler").unlink()
        pending = lake / "_pending"
        _mount_tmpfs(pending, "4k")
        try:
            _leave_free(pending, 0)
            fails_cleanly()
        finally:
            subprocess.run(["umount", "-l", str(pending)], check=False)
        assert not any(pending.iterdir())
        print("\n".join(errors))

        # The lake moved to a bigger disk: that copy commits everything, exactly once.
        moved = tmp_path / "moved"
        shutil.copytree(lake, moved / "lake")
        report = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=moved / "lake")
        assert kill9_test._books(moved) == expected
        assert audit_batch(moved / "lake", landing, report.batch_id) == []

        # Or room freed in place: the same.
        report = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
        assert kill9_test._books(mnt) == expected
        assert audit_batch(lake, landing, report.batch_id) == []
        assert _leftovers(lake) == []
        # And a rerun changes nothing.
        again = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
        assert again.batch_id is None and kill9_test._books(mnt) == expected
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
    expected = kill9_test._books(tmp_path / "ref")

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
            assert not list((mnt / "lake" / "ingest_log").glob("*.parquet"))

            (mnt / "filler").unlink()  # room again; no manual run follows
            requests, cursor, _ = _tick(defs, instance, cursor)
            assert len(requests) == 1 and requests[0].tags["landing/sweep"] == "1"
            assert job.execute_in_process(run_config=requests[0].run_config, instance=instance).success
            assert kill9_test._books(mnt) == expected
            assert _leftovers(mnt / "lake") == []
            assert _tick(defs, instance, cursor)[0] == []  # and the sweep after that finds nothing left
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
