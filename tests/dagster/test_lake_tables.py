"""The lake tables as a person reads them in the UI (review, issue 17): every lake table asset shows
its columns (names and types from the table's own Arrow schema, docs from the data contract), and
checks that can fail: the committed schema, every quarantined row explained, no file logged twice.
Metadata are numbers and tables, not JSON blobs."""

from __future__ import annotations

import dagster as dg
import pyarrow as pa
import pytest

from tests.dagster.conftest import resources_for
from tests.ingest.conftest import dumps, valid_record, write_landing
from tiktok_pipelines.defs.ingest.assets import (
    INGEST_LOG_KEY,
    QUARANTINE_KEY,
    ingest_landing,
    lake_table_schemas,
    logged_twice,
    quarantine_problems,
    raw_key,
    schema_problems,
)
from tiktok_pipelines.ingest.engine import INGEST_LOG_DIR, QUARANTINE_DIR, QUARANTINE_SCHEMA, Lake
from tiktok_pipelines.schemas import STREAMS
from tiktok_pipelines.tables import TableStore

VIEWS = STREAMS["views"]


def _ingest(data, instance, seq, bad_lines=1):
    lines = [dumps(valid_record(VIEWS, seq * 10 + i, event_id=f"v{seq}-{i}")) for i in range(4)] + ["{bad"] * bad_lines
    rel = write_landing(data / "landing", "views", lines, seq=seq)
    return dg.materialize([ingest_landing], resources=resources_for(data), instance=instance,
                          run_config={"ops": {"ingest_landing": {"config": {"files": [rel]}}}})


def _checks(result) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


def test_every_lake_table_shows_the_columns_it_is_written_with(tmp_path, instance):
    data = tmp_path / "data"
    assert _ingest(data, instance, 1).success
    lake = Lake(data / "lake")
    specs = ingest_landing.specs_by_key
    assert set(lake_table_schemas()) == set(specs)  # every asset of the ingest is a lake table
    for key, (table, schema) in lake_table_schemas().items():
        cols = specs[key].metadata["dagster/column_schema"].columns
        assert [c.name for c in cols] == schema.names
        # every column the lake adds, and every contract field the contract documents, has its doc
        stream = key.path[-1][len("raw_"):] if key.path[-1].startswith("raw_") else None
        undocumented = {f.name for f in STREAMS[stream].fields if not f.doc} if stream else set()
        assert [c.name for c in cols if not c.description] == [n for n in schema.names if n in undocumented]
        if lake.store.table(table) is not None:  # the committed table has exactly these columns
            assert pa.schema(lake.store.table(table).schema()).names == [c.name for c in cols]
    views = {c.name: c for c in specs[raw_key("views")].metadata["dagster/column_schema"].columns}
    assert views["event_id"].description == VIEWS.field("event_id").doc
    assert views["event_id"].type == "VARCHAR" and views["event_date"].type == "DATE"
    assert views["event_id"].constraints.nullable is False  # required by the contract


def test_the_checks_run_and_pass_on_a_clean_batch_and_metadata_are_readable(tmp_path, instance):
    data = tmp_path / "data"
    result = _ingest(data, instance, 1, bad_lines=2)
    assert result.success
    checks = _checks(result)
    expected = ({(raw_key(s).to_user_string(), "schema_matches") for s in STREAMS}
                | {(raw_key(s).to_user_string(), "event_id_unique") for s in STREAMS}
                | {("quarantine", "schema_matches"), ("quarantine", "rows_explained"),
                   ("ingest_log", "schema_matches"), ("ingest_log", "accounting_balanced"),
                   ("ingest_log", "file_key_unique")})
    assert set(checks) == expected
    failed = {k: e.metadata for k, e in checks.items() if not e.passed}
    assert not failed, failed
    assert checks[("quarantine", "rows_explained")].metadata["rows_checked"].value == 2
    # a stream with no table yet: its schema check says so, and passes
    assert "not created yet" in checks[("raw_orders", "schema_matches")].metadata["problems"].value

    mats = {m.asset_key.to_user_string(): m.metadata for m in result.get_asset_materialization_events()
            for m in [m.event_specific_data.materialization]}
    log = mats["ingest_log"]
    by_stream = {r.data["stream"]: r.data for r in log["by_stream"].records}
    assert by_stream["views"]["rows_read"] == 6 and by_stream["all"]["rows_quarantine"] == 2
    assert isinstance(log["rows_per_second"].value, int)
    assert log["seconds"].value == round(log["seconds"].value, 2)
    assert mats["raw_views"]["partitions_touched"].value == 1
    for meta in mats.values():  # no value a person reads is a JSON blob or a 16-digit float
        for v in meta.values():
            assert not isinstance(v, dg.JsonMetadataValue)
            if isinstance(v, dg.FloatMetadataValue):
                assert v.value == round(v.value, 2)


def test_file_key_unique_fails_when_a_file_is_logged_twice(tmp_path, instance):
    """A second commit record for a file (a double ingest, or a hand-made append) fails the check
    of the next run, naming the file."""
    data = tmp_path / "data"
    assert _ingest(data, instance, 1).success
    store = TableStore.from_config(data / "lake")
    log = Lake(data / "lake").read_ingest_log()
    store.commit(INGEST_LOG_DIR, log, txn="a-second-record")
    assert [(k, n) for k, _, n in logged_twice(store)] == [(log.column("file_key")[0].as_py(), 2)]
    result = _ingest(data, instance, 2)
    check = _checks(result)[("ingest_log", "file_key_unique")]
    assert not check.passed and check.metadata["files_logged_twice"].value == 1
    assert log.column("rel_path")[0].as_py() in check.metadata["logged_twice"].value


def test_rows_explained_and_schema_matches_can_fail(tmp_path):
    store = TableStore.from_config(tmp_path / "lake")
    rows = pa.table({"stream": ["views", "nope", "views"], "src_file": ["a", "b", None], "src_line": [1, 0, 2],
                     "reason": ["malformed_json", None, "x"], "event_id": [None] * 3, "raw_line": ["{"] * 3,
                     "batch_id": ["b1"] * 3, "ingested_at_ms": [0] * 3}, schema=QUARANTINE_SCHEMA)
    store.commit(QUARANTINE_DIR, rows, txn="t1")
    n, problems = quarantine_problems(store, "b1")
    assert n == 3 and sorted(problems) == sorted([
        "1 rows without a known stream", "1 rows without a source file", "1 rows without a line number >= 1",
        "1 rows without a reason"])
    assert quarantine_problems(store, "another batch") == (0, [])
    assert schema_problems(store, QUARANTINE_DIR, QUARANTINE_SCHEMA) == []

    # a table written with another schema: a column missing, one added, one of another type
    drifted = pa.schema([f if f.name != "src_line" else pa.field("src_line", pa.string())
                         for f in QUARANTINE_SCHEMA if f.name != "raw_line"] + [pa.field("extra", pa.int64())])
    store.commit("drifted", drifted.empty_table(), txn="t1")
    assert sorted(schema_problems(store, "drifted", QUARANTINE_SCHEMA)) == sorted([
        "missing column raw_line (VARCHAR)", "unexpected column extra (BIGINT)",
        "column src_line is VARCHAR, expected BIGINT"])
    assert schema_problems(store, "no_such_table", QUARANTINE_SCHEMA) is None


@pytest.mark.parametrize("key", [QUARANTINE_KEY, INGEST_LOG_KEY])
def test_checks_are_declared_on_each_lake_table(key):
    names = {s.name for s in ingest_landing.check_specs if s.asset_key == key}
    assert "schema_matches" in names and len(names) >= 2
