"""The ``store`` fixture: the lake's table tests on local disk and on the S3 endpoint (the endpoint
fixtures, ``s3_endpoint`` and ``s3_env``, live in tests/s3.py for every test package)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.s3 import S3_ENV, new_bucket
from tiktok_pipelines.tables import TableStore


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path: Path) -> TableStore:
    """The same tests on local disk and on the S3 endpoint."""
    if request.param == "local":
        return TableStore.from_config(tmp_path / "lake")
    endpoint = request.getfixturevalue("s3_endpoint")
    request.getfixturevalue("s3_env")
    return TableStore.from_config(f"s3://{new_bucket(endpoint)}/lake", endpoint_url=endpoint)


def worker_env(store: TableStore) -> dict[str, str]:
    return {**os.environ, **S3_ENV} if not store.is_local else dict(os.environ)
