"""A real S3-compatible endpoint for the lake's object-storage tests: moto's standalone server
(``moto[server]``, from the package registries) on 127.0.0.1, one per test session."""

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

from tiktok_pipelines.tables import TableStore

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
    name = f"lake-{uuid.uuid4().hex[:12]}"
    r = httpx.put(f"{endpoint}/{name}")
    r.raise_for_status()
    return name


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
