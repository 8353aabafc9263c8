"""Landing paths: ``..``, absolute paths and symlinks out of the landing zone are refused.

Three ways a path reaches the engine, each fuzzed or tried:

- a relative path given by hand (the ingest job's ``files`` config): ``safe_landing_path`` and
  ``stat_landing_file`` over arbitrary strings, in a landing zone holding symlinks that point out
  of it (to a directory, to a file, to ``..``, to ``/etc``) and a stream directory that is itself a
  symlink. A path is refused with ``UnsafeLandingPath`` or names a file that is not there; a path
  that is accepted resolves inside the zone without crossing a symlink; nothing else is raised;
- the listing the sensor uses (``list_landing_files``) over random trees of files, directories and
  symlinks: it never lists a path through a symlink or out of the zone, and ingesting what it
  lists never brings in the record that lives outside. A name that the strict rule refuses but that
  is an ordinary file here (``x\\..\\y.ndjson``: on POSIX ``\\`` is a character) is listed and
  then quarantined whole by the ingest as ``unsafe_name``, never read into the lake;
- the ingest job itself, on a real Dagster instance, with unsafe ``files`` in its run config: the
  run fails on the path and the lake stays empty.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import dagster as dg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.dagster.conftest import resources_for
from tests.fuzz.conftest import fuzz_settings
from tests.ingest.conftest import dumps, valid_record, write_landing
from tiktok_pipelines.defs.ingest.assets import ingest_landing
from tiktok_pipelines.ingest.engine import Lake, events_table, ingest_files
from tiktok_pipelines.ingest.landing import (
    UnsafeLandingPath,
    list_landing_files,
    safe_landing_path,
    stat_landing_file,
)
from tiktok_pipelines.schemas import STREAMS

OUTSIDE_ID = "OUTSIDE-the-landing-zone"
GOOD = "views/dt=2026-11-02/views-20261102T120000Z-000001.ndjson"


def _outside(base: Path) -> Path:
    """A directory beside the landing zone holding a perfectly valid landing file."""
    out = base / "outside"
    (out / "dt=2026-11-02").mkdir(parents=True, exist_ok=True)
    line = dumps(valid_record(STREAMS["views"], 0, event_id=OUTSIDE_ID)) + "\n"
    (out / "dt=2026-11-02" / "views-20261102T120000Z-000009.ndjson").write_text(line)
    (out / "secret.ndjson").write_text(line)
    return out


def _fixed_zone(base: Path) -> Path:
    landing = base / "landing"
    outside = _outside(base)
    write_landing(landing, "views", [dumps(valid_record(STREAMS["views"], 1))])
    views = landing / "views"
    os.symlink(outside, views / "out")  # a directory out of the zone
    os.symlink(outside / "secret.ndjson", views / "dt=2026-11-02" / "secret.ndjson")  # a file
    os.symlink("..", views / "dt=2026-11-02" / "up")  # relative, back up a level
    os.symlink("../../outside", views / "rel_out")  # relative, out of the zone
    os.symlink("/etc", views / "etc")  # absolute
    os.symlink(outside, landing / "impressions")  # a whole stream directory
    os.symlink(landing / "views" / "dt=2026-11-02", views / "inside_link")  # stays inside: still refused
    os.mkfifo(views / "dt=2026-11-02" / "pipe.ndjson")  # not a file: reading it would block the ingest
    # An ordinary file here whose name escapes where "\\" is a separator: refused by the strict
    # rule, accepted by stat (the sensor names it in run configs) and quarantined by the ingest.
    (views / "dt=2026-11-02" / "x\\..\\y.ndjson").write_text(dumps(valid_record(STREAMS["views"], 2)) + "\n")
    return landing


COMPONENTS = ["views", "impressions", "dt=2026-11-02", "out", "rel_out", "etc", "up", "inside_link", "pipe.ndjson",
              "secret.ndjson", "views-20261102T120000Z-000001.ndjson", "views-20261102T120000Z-000009.ndjson",
              "passwd", "..", ".", "", "~", "outside", "landing", "C:", "%2e%2e", "...", " ", "\x00", "..\\..",
              "\\"]

rel_paths = st.one_of(
    st.builds(lambda parts, sep, lead: lead + sep.join(parts),
              st.lists(st.sampled_from(COMPONENTS) | st.text(max_size=12), min_size=1, max_size=6),
              st.sampled_from(["/", "\\", "//"]), st.sampled_from(["", "", "/", "\\", "./", "../", "~/"])),
    st.text(max_size=60),
    # Real prefixes with a fuzzed tail: these reach the files, the symlinks and the FIFO.
    st.builds(lambda prefix, tail: prefix + "/".join(tail),
              st.sampled_from(["views/", "views/dt=2026-11-02/", "impressions/", "views/out/", "views/inside_link/"]),
              st.lists(st.sampled_from(COMPONENTS), max_size=3)),
)


def _through_symlink(root: Path, resolved: Path) -> bool:
    current = root
    for part in resolved.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            return True
    return False


def test_fuzz_given_paths_never_leave_the_landing_zone(tmp_path, tally):
    landing = _fixed_zone(tmp_path)
    root = landing.resolve()
    outcomes = {"refused": 0, "accepted": 0, "stat_ok": 0, "existing_escapes_refused": 0}

    @fuzz_settings(300)
    @given(rel_paths)
    def prop(rel: str) -> None:
        parts = re.split(r"[/\\]", rel)
        # A path that exists and leads out of the zone, or through a symlink, on this file system.
        escapes = "\x00" not in rel and os.path.lexists(os.path.join(landing, rel)) and (
            root not in Path(os.path.realpath(os.path.join(landing, rel))).parents
            or os.path.realpath(os.path.join(landing, rel)) != os.path.abspath(os.path.join(root, rel)))
        try:
            p = safe_landing_path(landing, rel)
        except UnsafeLandingPath:
            outcomes["refused"] += 1
            outcomes["existing_escapes_refused"] += bool(escapes)
        else:
            outcomes["accepted"] += 1
            assert not escapes, rel
            assert ".." not in parts and not rel.startswith(("/", "\\"))
            assert root in p.parents
            assert not _through_symlink(root, p)
        try:
            f = stat_landing_file(landing, rel)
        except UnsafeLandingPath:
            pass
        except OSError:
            pass  # a safe path to a file that is not there (or a name too long for the file system)
        else:
            outcomes["stat_ok"] += 1
            real = Path(os.path.realpath(landing / f.rel_path))
            assert root in real.parents and f.stream in STREAMS and real.is_file()
            assert OUTSIDE_ID not in real.read_text()
        tally.add("landing_given_paths", inputs=1)

    prop()
    # Every path tried was either refused or safe; the hand-picked escapes are all refused.
    for rel in ["../outside/secret.ndjson", str(tmp_path / "outside" / "secret.ndjson"), "views/out/secret.ndjson",
                "views/dt=2026-11-02/secret.ndjson", "views/dt=2026-11-02/up/out/secret.ndjson",
                "views/rel_out/secret.ndjson", "views/etc/passwd", "impressions/secret.ndjson",
                "views/inside_link/views-20261102T120000Z-000001.ndjson", "views/../../outside/secret.ndjson",
                "views\\..\\..\\outside\\secret.ndjson", "views/dt=2026-11-02/a\x00b.ndjson",
                "views/dt=2026-11-02/pipe.ndjson", "views/dt=2026-11-02"]:
        with pytest.raises(UnsafeLandingPath):
            stat_landing_file(landing, rel)
    assert stat_landing_file(landing, GOOD).stream == "views"
    backslashed = "views/dt=2026-11-02/x\\..\\y.ndjson"
    with pytest.raises(UnsafeLandingPath):
        safe_landing_path(landing, backslashed)
    assert stat_landing_file(landing, backslashed).stream == "views"
    assert outcomes["refused"] and outcomes["accepted"] and outcomes["existing_escapes_refused"]
    tally.add("landing_given_paths", **outcomes)


# --- the listing the sensor uses, over random trees --------------------------------------------

STREAM_DIRS = ["views", "impressions", "orders", "not_a_stream", ".hidden"]
MIDDLE = ["dt=2026-11-02", "dt=2026-11-03", "a", ".hidden", "dt=a\\..", "..."]
LEAVES = ["x.ndjson", "views-20261102T120000Z-000003.ndjson", "views-20261102T120000Z-000009.ndjson",
          ".in-flight.ndjson", "notes.txt", "dt=2026-11-02", "x\\..\\y.ndjson", "..x.ndjson", "a..ndjson",
          "views-20261399T120000Z-000004.ndjson"]
TARGETS = ["outside_dir", "outside_file", "..", "../..", "/etc", "landing_root", "sibling"]
# Entries shaped like the zone (stream/[folders/]leaf), the leaf a file, folder, symlink or FIFO;
# a symlinked folder exposes the outside record under a name the listing would otherwise take.
tree_entries = st.lists(
    st.tuples(st.builds(lambda s, m, leaf: [s, *m, leaf], st.sampled_from(STREAM_DIRS),
                        st.lists(st.sampled_from(MIDDLE), max_size=2), st.sampled_from(LEAVES)),
              st.sampled_from(["file", "file", "dir", "symlink", "fifo"]), st.sampled_from(TARGETS)),
    min_size=1, max_size=12,
)


def _build_tree(landing: Path, outside: Path, entries) -> None:
    landing.mkdir(parents=True, exist_ok=True)
    for parts, kind, target in entries:
        path = landing.joinpath(*parts)
        if os.path.lexists(path):
            continue  # an earlier entry took the name (writing into a FIFO there would block)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if kind == "file":
                path.write_text(dumps(valid_record(STREAMS["views"], len(parts))) + "\n")
            elif kind == "dir":
                path.mkdir(exist_ok=True)
            elif kind == "fifo":
                os.mkfifo(path)
            else:
                dest = {"outside_dir": str(outside / "dt=2026-11-02"), "outside_file": str(outside / "secret.ndjson"),
                        "landing_root": str(landing), "sibling": str(path.parent)}.get(target, target)
                os.symlink(dest, path)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            pass  # a file, FIFO or symlink stands where a folder would go


def _committed_ids(lake: Path, stream: str) -> list[str]:
    """A stream's committed event ids (its Delta snapshot; none if the table does not exist)."""
    ds = Lake(lake).store.dataset(events_table(stream))
    return [] if ds is None else ds.to_table(columns=["event_id"]).column("event_id").to_pylist()


def test_fuzz_listing_never_follows_a_symlink_or_leaves_the_zone(tally):
    @fuzz_settings(80)
    @given(tree_entries)
    def prop(entries) -> None:
        with tempfile.TemporaryDirectory(prefix="fuzz-landing-") as tmp:
            base = Path(tmp)
            outside = _outside(base)
            landing = base / "landing"
            _build_tree(landing, outside, entries)
            root = landing.resolve()
            files = list_landing_files(landing)  # never raises on a name
            strict_refused = set()
            for f in files:
                # Everything listed is inside by the POSIX rule the ingest reads with ...
                p = safe_landing_path(landing, f.rel_path, posix=True)
                assert root in p.parents and not _through_symlink(root, p)
                assert f.stream in STREAMS and not any(part.startswith(".") for part in Path(f.rel_path).parts)
                assert p.is_file()  # a regular file: never a FIFO the ingest would block on
                try:  # ... and what the strict rule refuses is quarantined whole, below
                    safe_landing_path(landing, f.rel_path)
                except UnsafeLandingPath:
                    strict_refused.add(f.rel_path)
            if files:
                report = ingest_files(files, landing_root=landing, lake_root=base / "lake")
                ids = [i for stream in STREAMS for i in _committed_ids(base / "lake", stream)]
                assert OUTSIDE_ID not in ids
                quarantined = dict((f.file.rel_path, r) for f, r in report.quarantined_files())
                assert {rel for rel, r in quarantined.items() if r == "unsafe_name"} == strict_refused
                assert all(f.rows_lake == 0 for f in report.files if f.file.rel_path in quarantined)
            tally.add("landing_listing_trees", inputs=1, files_listed=len(files),
                      symlinks=sum(1 for _, kind, _ in entries if kind == "symlink"))

    prop()


# --- the ingest job's config, on a real instance -----------------------------------------------


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink", "nul"])
def test_ingest_job_refuses_unsafe_config_paths(case, tmp_path, tally):
    data = tmp_path / "data"
    landing = _fixed_zone(data)
    rel = {"dotdot": "views/../../outside/secret.ndjson",
           "absolute": str(data / "outside" / "secret.ndjson"),
           "symlink": "views/out/dt=2026-11-02/views-20261102T120000Z-000009.ndjson",
           "nul": "views/dt=2026-11-02/a\x00b.ndjson"}[case]
    with dg.instance_for_test() as instance:
        result = dg.materialize([ingest_landing], resources=resources_for(data), instance=instance,
                                run_config={"ops": {"ingest_landing": {"config": {"files": [rel, GOOD]}}}},
                                raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert "UnsafeLandingPath" in json.dumps(failure.event_specific_data.error.to_string()), failure
        # Refused before anything was read: not even the safe file of the same run was ingested.
        assert not any(_committed_ids(data / "lake", stream) for stream in STREAMS)
        # The same job with the safe path alone succeeds: the refusal was the path, not the setup.
        ok = dg.materialize([ingest_landing], resources=resources_for(data), instance=instance,
                            run_config={"ops": {"ingest_landing": {"config": {"files": [GOOD]}}}})
        assert ok.success and landing.exists()
    tally.add("ingest_job_config_paths", inputs=1)
