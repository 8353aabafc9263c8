"""WarehouseResource: the one way the defs open warehouse.duckdb. Read-write creates the file (and
its folder) and keeps what it writes; read-only sees it and refuses to write; both close on exit."""

import duckdb
import pytest

from tiktok_pipelines.defs.resources import PlatformStorage


def test_read_write_for_writers_read_only_for_readers(tmp_path):
    storage = PlatformStorage(data_dir=str(tmp_path / "data"))
    warehouse = storage.warehouse_db
    assert warehouse.path == str(storage.warehouse)
    with warehouse.connect() as con:
        con.execute("CREATE SCHEMA marts; CREATE TABLE marts.t AS SELECT 42 AS x")
    with pytest.raises(duckdb.ConnectionException):
        con.execute("SELECT 1")  # closed when the block ended
    with warehouse.connect(read_only=True) as con:
        assert con.execute("SELECT x FROM marts.t").fetchall() == [(42,)]
        with pytest.raises(duckdb.InvalidInputException, match="read-only"):
            con.execute("CREATE TABLE marts.u AS SELECT 1")
    # a reader never creates a warehouse that is not there
    missing = PlatformStorage(data_dir=str(tmp_path / "none")).warehouse_db
    with pytest.raises(duckdb.IOException):
        with missing.connect(read_only=True):
            pass
    assert not (tmp_path / "none").exists()
