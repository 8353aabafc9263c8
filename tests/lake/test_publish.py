"""tiktok_pipelines.publish: a process killed with SIGKILL at every step of a publication leaves
the old state or the new one whole, and the next publication removes what it left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.lake.publish_worker import FILES, content
from tiktok_pipelines import publish

REPO = Path(__file__).resolve().parents[2]
DIR_STEPS = ["staged", "half", "written", "synced", "manifest", "renamed", "done"]
REPLACE_STEPS = ["staged", "half", "written", "synced", "manifest", "renamed", "linked", "swapped", "done"]
FILE_STEPS = ["written", "synced", "renamed", "done"]


def run_worker(mode: str, target: Path, tag: str, at: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.lake.publish_worker", mode, str(target), tag, at],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def state(target: Path) -> str | None:
    """The tag of the whole folder at ``target`` (None if there is none); fails on a mix."""
    if not os.path.lexists(target):
        return None
    folder = target.resolve()  # one version, even if the link is swapped meanwhile
    manifest = json.loads((folder / "manifest.json").read_text())
    tag = manifest["tag"]
    assert sorted(manifest["files"]) == sorted(FILES)
    on_disk = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    if not folder.is_dir():
        raise FileNotFoundError(folder)  # removed (renamed away whole) while it was listed
    assert on_disk == sorted([*FILES, "manifest.json"])
    for name, digest in manifest["files"].items():
        assert publish.sha256_file(folder / name) == digest
        assert (folder / name).read_bytes() == content(tag, name)
    return tag


def publish_in_process(mode: str, target: Path, tag: str) -> None:
    from tests.lake.publish_worker import main

    main(mode, str(target), tag)


def kill_at(mode: str, target: Path, step: str) -> list[str]:
    """Publish "new" as ``target`` in a child process SIGKILLed at ``step``; the names of what the
    crash left beside ``target`` (besides the target and its versions)."""
    proc = run_worker(mode, target, "new", step)
    assert proc.returncode == -9, proc.stderr  # it got to that step and died there
    return [n for n in os.listdir(target.parent) if n.startswith(f".{target.name}.tmp-")]


@pytest.mark.parametrize("step", DIR_STEPS)
def test_new_folder_killed_at_every_step(tmp_path: Path, step: str) -> None:
    target = tmp_path / "v0002"
    publish_in_process("dir", tmp_path / "v0001", "old")
    left = kill_at("dir", target, step)
    assert bool(left) == (step not in ("renamed", "done"))
    assert state(tmp_path / "v0001") == "old"
    seen = state(target)
    assert seen == ("new" if step in ("renamed", "done") else None)
    if seen is None:
        publish_in_process("dir", target, "next")
        assert state(target) == "next"
    else:
        publish_in_process("dir", tmp_path / "v0003", "next")
    # the crash's staging folder is gone: only published folders are left
    assert sorted(os.listdir(tmp_path)) == ["v0001", "v0002"] + (["v0003"] if seen else [])


@pytest.mark.parametrize("step", REPLACE_STEPS)
def test_replaced_folder_killed_at_every_step(tmp_path: Path, step: str) -> None:
    target = tmp_path / "model"
    publish_in_process("replace", target, "old")
    old = os.readlink(target)
    left = kill_at("replace", target, step)
    # before the swap: its staging folder, or its version folder that no link names (and its link)
    orphans = left + [n for n in os.listdir(tmp_path) if n.startswith(".model.v-")
                      and n not in (old, os.readlink(target))]
    assert bool(orphans) == (step not in ("swapped", "done"))
    assert state(target) == ("new" if step in ("swapped", "done") else "old")
    publish_in_process("replace", target, "next")
    assert state(target) == "next"
    # left: the link, the version it names and the one it replaced (kept for readers in flight)
    names = sorted(os.listdir(tmp_path))
    assert names[-1] == "model" and len(names) == 3, names
    assert all(n.startswith(".model.v-") for n in names[:-1]), names
    assert os.readlink(target) in names


@pytest.mark.parametrize("mode", ["file", "file-not-durable"])
@pytest.mark.parametrize("step", FILE_STEPS)
def test_file_killed_at_every_step(tmp_path: Path, step: str, mode: str) -> None:
    # Not durable (no fsync: the simulator's files) is still all or nothing for a reader.
    target = tmp_path / "champion.json"
    publish_in_process(mode, target, "old")
    left = kill_at(mode, target, step)
    assert bool(left) == (step not in ("renamed", "done"))
    assert target.read_bytes() == content("new" if step in ("renamed", "done") else "old", "file")
    publish_in_process(mode, target, "next")
    assert target.read_bytes() == content("next", "file")
    assert os.listdir(tmp_path) == ["champion.json"]


def test_a_live_publishers_staging_is_not_taken_for_a_leftover(tmp_path: Path) -> None:
    """Another publisher of the same target, paused after writing its files: publishing meanwhile
    (which cleans leftovers) leaves its staging folder alone, and it then completes."""
    target = tmp_path / "model"
    slow = subprocess.Popen([sys.executable, "-m", "tests.lake.publish_worker", "replace", str(target), "slow",
                             "wait:synced"], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert slow.stdout.readline().strip() == "waiting"
        publish_in_process("replace", target, "fast")
        assert state(target) == "fast"
        slow.stdin.write("go\n")
        slow.stdin.flush()
        assert slow.wait(timeout=60) == 0
    finally:
        slow.kill()
    assert state(target) == "slow"


def test_a_replaced_folder_is_never_missing(tmp_path: Path) -> None:
    """A reader polling while another process swaps in version after version: ``target`` is
    always there, and what it reads is always one whole version."""
    target = tmp_path / "model"
    publish_in_process("replace", target, "v0")
    stop = threading.Event()
    problems: list[str] = []
    reads = []

    def reader() -> None:
        while not stop.is_set():
            if not os.path.exists(target / "manifest.json"):
                problems.append("target missing")
            try:
                reads.append(state(target))
            except FileNotFoundError:
                pass  # the version it resolved was removed two swaps later: a reader retries
            except AssertionError as e:
                problems.append(f"mixed: {e}")

    t = threading.Thread(target=reader)
    t.start()
    try:
        code = ("from tests.lake.publish_worker import main\n"
                f"for i in range(1, 31): main('replace', {str(target)!r}, f'v{{i}}')\n")
        subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)
    finally:
        stop.set()
        t.join()
    assert problems == []
    assert len(reads) > 10 and state(target) == "v30"


def test_legacy_folder_becomes_a_link_without_a_gap(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("published before links")
    publish_in_process("replace", target, "new")
    assert target.is_symlink() and state(target) == "new"
    assert sorted(os.listdir(tmp_path)) == [os.readlink(target), "model"]


def test_new_folder_never_replaces(tmp_path: Path) -> None:
    target = tmp_path / "v0001"
    target.mkdir()
    with pytest.raises(FileExistsError):
        with publish.publish_dir(target) as tmp:
            (tmp / "x").write_text("x")
    # raced: the target appears while the folder is being written; the rename refuses
    with pytest.raises(FileExistsError):
        with publish.publish_dir(tmp_path / "v0002") as tmp:
            (tmp / "x").write_text("x")
            (tmp_path / "v0002").mkdir()
    assert os.listdir(tmp_path / "v0002") == [] and sorted(os.listdir(tmp_path)) == ["v0001", "v0002"]


def test_a_failed_block_publishes_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with publish.publish_dir(tmp_path / "v0001") as tmp:
            (tmp / "x").write_text("x")
            raise RuntimeError("writer failed")
    assert os.listdir(tmp_path) == []


def test_makedirs_creates_missing_parents(tmp_path: Path) -> None:
    publish.atomic_write_json(tmp_path / "a" / "b" / "c.json", {"x": 1})
    assert json.loads((tmp_path / "a" / "b" / "c.json").read_text()) == {"x": 1}


def test_staging_file_and_what_a_library_made_beside_it(tmp_path: Path) -> None:
    """A live publisher's staging file and its WAL stay while another publication cleans; once
    that publisher is gone (its flock dropped), both go."""
    target = tmp_path / "analytics.duckdb"
    with publish.staging_file(target) as tmp:
        wal = tmp.with_name(tmp.name + ".wal")
        wal.write_bytes(b"wal")
        publish.atomic_write_bytes(target, b"other")  # cleans leftovers: not these
        assert tmp.exists() and wal.exists()
    # left as a crash leaves them (the block did not raise, nothing moved them into place)
    assert tmp.exists() and wal.exists()
    publish.atomic_write_bytes(target, b"next")
    assert os.listdir(tmp_path) == ["analytics.duckdb"] and target.read_bytes() == b"next"


def test_without_renameat2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the C library has no renameat2: a new folder still never replaces one, and a real
    folder at a replaced target still becomes a link to the new version."""
    monkeypatch.setattr(publish, "_libc", lambda: False)
    publish_in_process("dir", tmp_path / "v0001", "one")
    with pytest.raises(FileExistsError):
        with publish.publish_dir(tmp_path / "v0002") as tmp:
            (tmp_path / "v0002").mkdir()
            (tmp_path / "v0002" / "x").write_text("the other publisher's")
    assert os.listdir(tmp_path / "v0002") == ["x"]
    legacy = tmp_path / "model"
    legacy.mkdir()
    (legacy / "old.txt").write_text("published before links")
    publish_in_process("replace", legacy, "new")
    assert legacy.is_symlink() and state(legacy) == "new"
    assert sorted(os.listdir(tmp_path)) == sorted([os.readlink(legacy), "model", "v0001", "v0002"])
