"""The Dagster UI in a real browser: `dagster dev` (as `make dev` starts it) on a small simulated
world, driven by headless Chromium (Playwright from PyPI with Debian's `chromium`).

The world is ingested with the CLI (no Dagster), then `tiktok-pipelines run build_all` runs as the
quick start does, on the same instance `dagster dev` then opens: what a user sees after
`make quickstart && make dev` (lineage, partitions, freshness), and a materialisation launched from
the UI on top of it.

`TIKTOK_UPDATE_SCREENSHOTS=1` also writes the screenshots into docs/img/ (the README shows one);
otherwise they stay in the test's temp dir, so CI does not dirty the clone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOCATION = "tiktok_pipelines"  # workspace.yaml's location_name
ASSET = "warehouse_lake_tables"
# The lineage view checked (and photographed): the landing-side groups and the warehouse.
GRAPH_GROUPS = ("ingest", "catalog", "warehouse")
GRAPH_NODES = ("raw_views", ASSET, "analytics_db")
DOCS_IMG = REPO / "docs" / "img"
# A loaded 2-core machine: pages and runs are slow, never stuck.
TIMEOUT_MS = 90_000

pytestmark = pytest.mark.slow


@dataclass
class DagsterUI:
    url: str
    ingest: dict  # the CLI ingest's report (rows_lake, ...)
    shots: Path  # where this run's screenshots go


def _graphql(url: str, query: str, **variables) -> dict:
    body = json.dumps({"query": query, "variables": variables}).encode()
    req = urllib.request.Request(f"{url}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        out = json.loads(resp.read())
    assert "errors" not in out, out["errors"]
    return out["data"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _live_members(pgid: int) -> list[str]:
    """Processes of the group that are still running (zombies are dead, only not reaped yet)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ')'
        state, _ppid, pgrp = text[text.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            alive.append(text[: text.rindex(")") + 1])
    return alive


def _wait_for_location(url: str, proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    """Until the webserver answers and has loaded the code location (a load error fails at once)."""
    query = ("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
             "locationOrLoadError { __typename ... on PythonError { message } } } } } }")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dagster dev exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            entries = _graphql(url, query)["workspaceOrError"]["locationEntries"]
        except OSError:
            entries = []
        for entry in entries:
            loaded = entry["locationOrLoadError"] or {}
            if entry["name"] == LOCATION and loaded.get("__typename") == "PythonError":
                pytest.fail(f"the code location failed to load: {loaded['message']}")
            if entry["name"] == LOCATION and entry["loadStatus"] == "LOADED" and loaded:
                return
        time.sleep(1)
    pytest.fail(f"dagster dev did not load {LOCATION} in {timeout:.0f}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    missing = [name for name, found in (("chromium", chromium), ("playwright", sync_playwright)) if not found]
    if missing:
        fixes = {"chromium": "apt-get install chromium (Debian's)", "playwright": "pip install -e '.[test]'"}
        why = f"{' and '.join(missing)} missing: " + "; ".join(fixes[name] for name in missing)
        if os.environ.get("TIKTOK_CI"):
            pytest.fail(f"TIKTOK_CI is set but {why}")
        pytest.skip(why)
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)  # expect() does not use the context's default timeout
    with sync_playwright() as pw:
        # Playwright's own browser download does not work here: drive Debian's chromium.
        browser = pw.chromium.launch(executable_path=chromium,
                                     args=["--no-sandbox", "--disable-background-networking"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def dagster_ui(browser, tmp_path_factory):
    from tiktok_pipelines.simulator import simulate

    root = tmp_path_factory.mktemp("ui")
    data, home, shots = root / "data", root / "dagster_home", root / "shots"
    shots.mkdir()
    simulate(data, seed=11, users=300, videos=600, days=2, events_per_day=10_000, kuairec_dir=None)
    done = subprocess.run([str(BIN / "tiktok-pipelines"), "ingest", "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=300, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["rows_lake"] > 0
    # What `make dagster-home` does: the repo's instance settings (pools, run queue).
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "TIKTOK_DATA_DIR": str(data), "DAGSTER_HOME": str(home)}
    # The quick start's job on this instance (`make run`).
    built = subprocess.run([str(BIN / "tiktok-pipelines"), "run", "build_all"], env=env,
                           capture_output=True, text=True, timeout=1200)
    assert built.returncode == 0, built.stderr[-4000:]
    assert json.loads(built.stdout.strip().splitlines()[-1])["success"] is True

    url = f"http://127.0.0.1:{_free_port()}"
    log = root / "dagster_dev.log"
    with open(log, "wb") as out:
        # `make dev`'s command. Its own process group: dagster dev ignores SIGTERM for its children
        # (webserver, daemon, code servers, run workers), so the whole group is killed at the end.
        proc = subprocess.Popen(
            [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1",
             "-p", url.rsplit(":", 1)[1]],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        _wait_for_location(url, proc, log)
        # The first visit to an instance shows a "Join the Dagster community" dialog, which can
        # open on top of (or under) another dialog and then cannot be clicked away: mark it seen on
        # the server, as its Skip button does, before any page opens.
        _graphql(url, "mutation { setNuxSeen }")
        assert _graphql(url, "{ shouldShowNux }")["shouldShowNux"] is False
        yield DagsterUI(url=url, ingest=report, shots=shots)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 20
        while _live_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _live_members(proc.pid), f"dagster dev left processes behind: {_live_members(proc.pid)}"


@pytest.fixture
def page(browser, dagster_ui):
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, base_url=dagster_ui.url)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


def _screenshot(page, dagster_ui: DagsterUI, name: str) -> None:
    path = dagster_ui.shots / name
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one
    if os.environ.get("TIKTOK_UPDATE_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_IMG / name)


def _expected_groups() -> Counter:
    """Group -> asset count, from the same definitions the code location loads."""
    from tiktok_pipelines.definitions import defs

    graph = defs().resolve_asset_graph()
    return Counter(graph.get(key).group_name for key in graph.get_all_asset_keys())


def test_code_location_assets_page_lists_every_group(dagster_ui, page):
    from playwright.sync_api import expect

    groups = _expected_groups()
    assert len(groups) > 5, groups
    page.goto(f"/locations/{LOCATION}/assets")
    # The tab counts the groups; the page lists each with its number of assets.
    expect(page.get_by_role("link", name=re.compile(rf"\bAssets\b.*\b{len(groups)}$"))).to_be_visible()
    body = page.locator("body")
    for group, count in sorted(groups.items()):
        label = f"{count} asset" + ("s" if count != 1 else "")
        expect(body).to_contain_text(re.compile(rf"(^|\n){re.escape(group)}\n{label}(\n|$)"),
                                     use_inner_text=True)


def test_materialize_from_the_ui_ends_in_a_successful_run(dagster_ui, page):
    from playwright.sync_api import expect

    page.goto(f"/assets/{ASSET}")
    page.get_by_role("button").filter(has_text=re.compile(r"^Materialize$")).click()
    # Its upstream (raw_*, dim_*) was ingested outside Dagster: the UI warns and asks to confirm.
    launched = page.get_by_text(re.compile(r"^Launched run [0-9a-f]{8}"))
    confirm = page.get_by_role("button", name="Confirm")
    expect(launched.or_(confirm)).to_be_visible()
    if confirm.is_visible():
        confirm.click()
    expect(launched).to_be_visible()
    # The toast's "View" link opens the run, as a user would.
    view = page.locator("a[href^='/runs/']").filter(has_text=re.compile(r"^View$"))
    run_id = view.get_attribute("href").rstrip("/").rsplit("/", 1)[1]
    assert launched.inner_text().split()[-1] == run_id[:8]
    view.click()
    page.wait_for_url(f"**/runs/{run_id}")
    expect(page.get_by_text("RUN_SUCCESS", exact=True)).to_be_visible()
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    _screenshot(page, dagster_ui, "run.png")

    data = _graphql(
        dagster_ui.url,
        "query R($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status "
        "assetSelection { path } tags { key value } } } "
        f'assetNodeOrError(assetKey: {{path: ["{ASSET}"]}}) {{ ... on AssetNode {{ '
        "assetMaterializations(limit: 1) { runId metadataEntries { label "
        "... on IntMetadataEntry { intValue } } } } } }",
        id=run_id,
    )
    run = data["runOrError"]
    assert run["status"] == "SUCCESS"
    assert run["assetSelection"] == [{"path": [ASSET]}]
    assert {"key": "dagster/from_ui", "value": "true"} in run["tags"]
    # The materialisation came from this run and its warehouse sees every row the lake holds.
    (materialization,) = data["assetNodeOrError"]["assetMaterializations"]
    assert materialization["runId"] == run_id
    rows = {e["label"]: e.get("intValue") for e in materialization["metadataEntries"]}
    assert rows["dagster/row_count"] >= dagster_ui.ingest["rows_lake"]


def test_global_lineage_graph_renders(dagster_ui, page):
    from playwright.sync_api import expect

    groups = _expected_groups()
    # Collapsed (the default): one node per group, joined by edges.
    page.goto("/asset-groups")
    for group in groups:
        # A group node holds its name and, once assets are materialised, their status counts.
        expect(page.locator("foreignObject").filter(has=page.get_by_text(group, exact=True))).to_have_count(1)
    assert page.locator("svg path").count() >= len(groups) - 1

    # The landing side expanded, as the UI links it: asset nodes with their names and the edges
    # from the raw streams into the warehouse.
    selection = " or ".join(f'group:"{g}"' for g in GRAPH_GROUPS)
    expanded = ",".join(f"global@global:{g}" for g in GRAPH_GROUPS)
    page.goto(f"/asset-groups~{urllib.parse.quote(selection, safe='')}/?"
              + urllib.parse.urlencode({"expanded": expanded}))
    for name in GRAPH_NODES:
        expect(page.get_by_text(name, exact=True)).to_be_visible()
    assert page.locator("svg path").count() >= len(GRAPH_NODES) - 1
    page.wait_for_timeout(1500)  # the viewport's zoom animation settles before the picture
    _screenshot(page, dagster_ui, "asset_graph.png")


_NODES = ("{ assetNodes { assetKey { path } groupName dependencyKeys { path } isPartitioned "
          "partitionStats { numMaterialized numPartitions numFailed } "
          "freshnessStatusInfo { freshnessStatus } } }")


def _nodes(url: str) -> dict[tuple[str, ...], dict]:
    return {tuple(n["assetKey"]["path"]): n for n in _graphql(url, _NODES)["assetNodes"]}


def test_lineage_shows_the_raw_stream_each_model_reads(dagster_ui, page):
    from playwright.sync_api import expect

    nodes = _nodes(dagster_ui.url)
    deps = {key: {tuple(d["path"]) for d in n["dependencyKeys"]} for key, n in nodes.items()}
    assert ("raw_views",) in deps[("staging", "views")]
    assert ("dim_users",) in deps[("staging", "users")]
    staging = [key for key, n in nodes.items() if n["groupName"] == "staging"]
    assert len(staging) >= 8
    # No model hangs off the one refresh node any more: each names the lake table it reads.
    assert not [key for key in staging if ("warehouse_lake_tables",) in deps[key]]
    # analytics_db is drawn as the sink it is: a few edges from what nothing else reads, not one per relation.
    assert ("marts", "creator_daily") in deps[("analytics_db",)]
    assert len(deps[("analytics_db",)]) <= 15, deps[("analytics_db",)]

    # What a user sees: the model's lineage tab names the raw stream above it.
    page.goto("/assets/staging/views?view=lineage")
    expect(page.get_by_text("raw_views", exact=True).first).to_be_visible()


def test_after_the_quick_start_no_partition_is_missing_and_nothing_is_stale(dagster_ui, page):
    from playwright.sync_api import expect

    nodes = _nodes(dagster_ui.url)
    daily = {key: n["partitionStats"] for key, n in nodes.items() if n["isPartitioned"]}
    assert {("creator_features",), ("user_features",), ("video_features",)} <= set(daily)
    for key, stats in daily.items():
        # Partitions are the dates the lake informs: every one of them was built by the quick start.
        assert stats["numPartitions"] > 0 and stats["numFailed"] == 0, (key, stats)
        assert stats["numMaterialized"] == stats["numPartitions"], (key, stats)
    # An idle instance right after the quick start: no freshness warning anywhere.
    stale = {key: n["freshnessStatusInfo"]["freshnessStatus"] for key, n in nodes.items()
             if n["freshnessStatusInfo"] and n["freshnessStatusInfo"]["freshnessStatus"] in ("WARNING", "DEGRADED")}
    assert not stale, stale

    page.goto("/assets/creator_features?view=partitions")
    expect(page.get_by_text(re.compile(r"Materialized")).first).to_be_visible()
    page.wait_for_timeout(1000)
    _screenshot(page, dagster_ui, "partitions.png")
