"""What one tick of the landing sensor requests: the pending landing files, grouped into runs.

What is pending is decided from the lake, not from the cursor: a landing file is pending when the
ingest log has no row for its identity (``Lake.ingested_keys``) and no queued or running run names
it in its config. Each tick requests runs, in groups of ``files_per_run``, for the pending files.
Runs before the log: a run that ends in between has committed its batch before it ended.

The window between a request and its commit: the daemon creates a tick's runs (NOT_STARTED, then
queued) before it evaluates the sensor again, so on the next tick those files are named by a run in
flight and are not requested twice. ``run_key`` is the batch id, derived from the files'
identities, so a replayed tick (the daemon resumes a tick it crashed in with the same cursor) asks
for the same keys and Dagster launches each once; and the ingest skips files already in the log,
so even a run launched twice changes nothing.

A file whose run ended without ingesting it (failed for good: retries spent on a full disk, a run
worker killed; or canceled) waits for the sweep: every ``sweep_s`` every pending file is
requested again, with a run key of its own per sweep (``sweep<n>-``), so a group whose run failed
is tried again, not skipped as a replay of a used key. Between sweeps the files named by such runs
(ended since the last sweep) are left alone, so a broken disk is not hammered by a run per tick.
No scheduled job ingests (the daily and hourly jobs read the lake), so without the sweep such files
would wait for a person to run ``ingest_job``. A run in flight with no file list (``build_all``, a
manual run) may take the same files: the second run then skips them (ingest log), so the overlap
costs a run, never a duplicate.

The cursor is small and bounded whatever the size of the landing zone: the number of landing
files, a digest of their identities and the newest arrival seen (a file's ctime), and when the last
sweep ran. When the listing is the one of the last tick and no sweep is due, nothing can have
become pending that was not requested already, so the tick ends after the listing without reading
the log or the runs. Cursors of earlier versions (a mark plus the keys of recent files, thousands
of them under load) are read for their sweep count and otherwise ignored: the lake decides.

No Dagster here: ``defs/ingest/sensors.py`` (``landing_sensor``) reads the runs and turns the plan
into run requests.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from tiktok_pipelines.ingest.engine import batch_id_for
from tiktok_pipelines.ingest.landing import LandingFile


@dataclass(frozen=True)
class PlannedRun:
    run_key: str
    files: list[str]  # landing paths, relative to the landing root
    sweep: int | None = None  # the sweep that requests these files again; None: new files


@dataclass
class TickPlan:
    """A tick's outcome: the cursor to store (None: unchanged), the runs to request, or why none."""

    cursor: str | None = None
    runs: list[PlannedRun] = field(default_factory=list)
    skip: str | None = None
    log: list[tuple[str, str]] = field(default_factory=list)  # (level: "info" | "warning", message)


def read_cursor(raw: str | None) -> dict | None:
    """The cursor's state, or None on a first tick. An earlier version's cursor (``recent`` keys,
    ``mtime_ns``) or one that does not parse is accepted: only its sweep count and time are kept,
    and with no ``listing`` the tick reads the lake."""
    if not raw:
        return None
    try:
        state = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(state, dict):
        return None
    out = {}
    for k in ("files", "arrived_ns", "swept_ns", "sweeps"):
        if isinstance(state.get(k), int):
            out[k] = state[k]
    if isinstance(state.get("listing"), str):
        out["listing"] = state["listing"]
    return out


def plan_tick(raw_cursor: str | None, files: list[LandingFile], *, now_ns: int, sweep_s: float,
              files_per_run: int, in_flight: Callable[[], set[str]], ingested: Callable[[], set[str]],
              failed_since: Callable[[int], set[str]]) -> TickPlan:
    """Plan a tick over the landing ``files`` (as listed now). Read only when the listing changed
    or a sweep is due, in this order: ``in_flight()`` (paths named by queued or running runs),
    ``ingested()`` (the ingest log's file keys), ``failed_since(ns)`` (paths named by runs that
    ended without ingesting them since the last sweep)."""
    cursor = read_cursor(raw_cursor)
    plan = TickPlan()
    if raw_cursor and (cursor is None or "listing" not in cursor):
        plan.log.append(("info", f"cursor of an earlier version ({len(raw_cursor):,} characters) replaced; "
                                 "pending files are read from the lake's ingest log"))
    listing = batch_id_for(files)
    state = {
        "files": len(files),
        "arrived_ns": max([f.arrived_ns for f in files] + [(cursor or {}).get("arrived_ns", 0)]),
        "listing": listing,
        "swept_ns": (cursor or {}).get("swept_ns", now_ns),  # a first tick reads everything: a sweep
        "sweeps": (cursor or {}).get("sweeps", 0),
    }
    sweep_due = cursor is not None and sweep_s > 0 and now_ns - state["swept_ns"] >= sweep_s * 1e9
    if cursor is not None and cursor.get("listing") == listing and not sweep_due:
        # The same files as the last tick, which requested every pending one or left it to the sweep.
        plan.skip = f"no new landing files ({len(files)} seen)"
        return plan

    # Runs first, then the log: a run that ends in between has committed before it ended.
    taken = in_flight()
    done = ingested()
    pending = [f for f in files if f.key not in done and f.rel_path not in taken]
    held = failed_since(state["swept_ns"]) if cursor is not None else set()
    new = [f for f in pending if f.rel_path not in held]
    # Only the files of runs that ended without ingesting them go under a sweep key: a file that
    # merely arrived since the last tick is new on a sweep tick as on any other.
    held_back = [f for f in pending if f.rel_path in held]
    sweep: list[LandingFile] = []
    if sweep_due:
        state["swept_ns"], state["sweeps"] = now_ns, state["sweeps"] + 1
        sweep = held_back
        if sweep:
            plan.log.append(("warning", f"sweep {state['sweeps']}: {len(sweep)} landing files are not ingested and "
                                        f"no run is taking them (first: {sweep[0].rel_path}); requesting them again"))
    elif held_back:
        plan.log.append(("info", f"{len(held_back)} landing files whose run failed wait for the next sweep"))

    if state != cursor:
        plan.cursor = json.dumps(state)
    if not new and not sweep:
        plan.skip = f"no new landing files ({len(files)} seen, {len(pending)} pending)"
        return plan
    step = max(1, files_per_run)
    plan.runs = _runs(new, step)
    # The sweep number in the key: a group whose run failed is launched again at the next sweep
    # (Dagster skips a run key it has seen), while a replay of this tick asks for the same keys.
    plan.runs += _runs(sweep, step, sweep=state["sweeps"])
    return plan


def _runs(files: list[LandingFile], step: int, sweep: int | None = None) -> list[PlannedRun]:
    prefix = f"sweep{sweep}-" if sweep is not None else ""
    return [PlannedRun(prefix + batch_id_for(group), [f.rel_path for f in group], sweep)
            for group in (files[i: i + step] for i in range(0, len(files), step))]
