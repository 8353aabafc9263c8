"""A real S3-compatible endpoint for every test package: moto's standalone server (``moto[server]``,
from the package registries) on 127.0.0.1, one per test session, and a lake root on both stores.

tests/conftest.py imports the fixtures, so any test may ask for them:

- ``s3_endpoint`` (session): the endpoint's URL, the server started on first use.
- ``s3_env``: moto's credentials and region in ``os.environ`` for the test (and its subprocesses).
- ``lake_root`` (parametrized ``local``/``s3``): a local lake directory, or ``s3://<new bucket>/lake``
  with ``AWS_ENDPOINT_URL`` and the credentials set in ``os.environ``, so that the engine, a
  ``python -c`` subprocess or an outside reader (``lake_storage_options``) find the store.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

# moto accepts any credentials; they are set for the test process and its workers only.
S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    port = _free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.TransportError:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"moto server did not start (exit {proc.poll()}); see {log.name}")
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture
def s3_env(monkeypatch):
    for k, v in S3_ENV.items():
        monkeypatch.setenv(k, v)
    return S3_ENV


def new_bucket(endpoint: str) -> str:
    name = f"lake-{uuid.uuid4().hex[:12]}"  # S3 wants 3 to 63 characters
    r = httpx.put(f"{endpoint}/{name}")
    r.raise_for_status()
    return name


@pytest.fixture(params=["local", "s3"])
def lake_root(request, tmp_path: Path, monkeypatch) -> str:
    """The lake on local disk (``<tmp>/lake``) or on the S3 endpoint (``s3://<bucket>/lake``, a new
    bucket per test, the endpoint and credentials in the environment)."""
    if request.param == "local":
        return str(tmp_path / "lake")
    endpoint = request.getfixturevalue("s3_endpoint")
    request.getfixturevalue("s3_env")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    return f"s3://{new_bucket(endpoint)}/lake"


def is_s3(root: str | os.PathLike) -> bool:
    return str(root).startswith("s3://")


def lake_storage_options(root: str | os.PathLike) -> dict[str, str] | None:
    """What an engine outside the project needs to read ``root`` (None on local disk): the
    object_store options delta-rs and polars take, from the environment ``lake_root`` set."""
    if not is_s3(root):
        return None
    return {"AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"], "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"], "AWS_REGION": os.environ["AWS_REGION"]}
