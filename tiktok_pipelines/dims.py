"""The catalog's dims as Delta tables in the lake (no Dagster import).

``dim_<name>`` (``defs/catalog``) validates the platform's export ``catalog/<name>.parquet`` and
publishes it as the Delta table ``dims/<name>`` under the lake root (local disk or
``s3://bucket/prefix``), replaced whole in one transaction: a reader sees the previous catalog or
the new one, never a mix, and every publication is a version of its own (time travel). The
warehouse's ``dims.*`` tables, the features (the videos' category and creator) and the content
tagger read the committed snapshot through the store, never a file path.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as pads

from tiktok_pipelines.schemas import CATALOG
from tiktok_pipelines.tables import TableStore

DIMS_DIR = "dims"

# The catalog contract's type names (schemas.CATALOG) as Arrow types.
_ARROW_TYPES = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(),
                "list<string>": pa.list_(pa.string())}


def dim_table(name: str) -> str:
    """The lake table of catalog table ``name``: ``dims/<name>``."""
    if name not in CATALOG:
        raise ValueError(f"unknown catalog table {name!r}; expected one of {sorted(CATALOG)}")
    return f"{DIMS_DIR}/{name}"


def publish_dim(store: TableStore, name: str, data: pa.Table) -> int:
    """Replace ``dims/<name>`` with ``data`` (all rows, in one Delta transaction; the schema may
    change with the export). Returns the table's new version.

    A column with no type at all (Arrow ``null``: an export whose column holds only NULLs, written
    without a schema) takes the contract's type, or string: a Delta table has no null type."""
    declared = CATALOG[name].columns
    for i, f in enumerate(data.schema):
        if pa.types.is_null(f.type):
            data = data.set_column(i, pa.field(f.name, _ARROW_TYPES.get(declared.get(f.name, ""), pa.string())),
                                   pa.nulls(data.num_rows, _ARROW_TYPES.get(declared.get(f.name, ""), pa.string())))
    return store.replace(dim_table(name), data)


def dim_dataset(store: TableStore, name: str, version: int | None = None) -> pads.Dataset | None:
    """``dims/<name>`` at a committed version (default: the newest) as an Arrow dataset; None
    until ``dim_<name>`` has published it."""
    return store.dataset(dim_table(name), version)


def read_dim(store: TableStore, name: str, columns: list[str] | None = None,
             version: int | None = None) -> pa.Table | None:
    """The rows of ``dims/<name>`` (only ``columns`` that it has, if given); None until published."""
    ds = dim_dataset(store, name, version)
    if ds is None:
        return None
    cols = None if columns is None else [c for c in columns if c in ds.schema.names]
    return ds.to_table(columns=cols)
