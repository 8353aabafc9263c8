"""The serving directory's twin on S3-compatible object storage: the keys, and the few calls the
serving store makes (``store.py`` holds the protocol; this module only talks to the bucket).

Layout under ``s3://bucket/prefix``::

    manifests/v00000007.json        the version's manifest: put last, with If-None-Match: *
    v00000007/<token>/tables/...    its files, under a key prefix of the publication's own
    v00000007/<token>/dense.npz     (``token``: 32 hex digits, named in the manifest's "objects")
    rejected/v00000007-<hex>.json   a manifest the writer set aside (no reader could load it)

Why the manifests have a prefix of their own (and not ``v00000007/manifest.json``): a reader polls
every second, and one LIST of ``manifests/`` returns every version (1,000 per page) with its ETag,
whatever the number of files per version; listing ``v*/manifest.json`` among the data objects
would page through every file of every version kept (hundreds of deltas x ~20 files).

Credentials come from the standard AWS chain (environment variables, profile); endpoint and region
from arguments, else ``AWS_ENDPOINT_URL`` / ``AWS_REGION`` (the conventions of
``TableStore.from_config``), read when a root is opened, never at import. boto3 is imported on
first use: a local serving directory needs none.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tiktok_pipelines import settings

MANIFESTS = "manifests"
REJECTED = "rejected"
_MANIFEST_KEY_RE = re.compile(r"^v(\d{8})\.json$")
_DATA_KEY_RE = re.compile(r"^v(\d{8})/([0-9a-f]{32})/(.+)$")
TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")


def is_remote(root: Any) -> bool:
    return isinstance(root, S3Root) or str(root).startswith("s3://")


def default_cache_base(configured: str | os.PathLike | None = None) -> Path:
    """Where readers and writers of object-storage serving roots keep their local copies:
    ``configured`` (the ``storage`` resource's ``serving_cache``), else ``TIKTOK_SERVING_CACHE`` as
    the environment has it now (``serve``, a root opened by its URI alone), else
    ``$XDG_CACHE_HOME`` (or ``~/.cache``)/tiktok_pipelines/serving."""
    base = configured or settings.value("TIKTOK_SERVING_CACHE")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tiktok_pipelines" / "serving"


@dataclass
class S3Root:
    """A serving root in a bucket, and the local folder its versions are copied into to be read.

    ``cache_dir`` (default: one folder per endpoint and URI under ``cache_base``, itself by default
    ``default_cache_base()``) is also where a publisher stages a version before uploading it and where the host's courtesy
    writer lock lives: processes of one host that share it download each version once."""

    uri: str
    endpoint_url: str | None = None
    region: str | None = None
    cache_dir: Path | None = None
    cache_base: str | os.PathLike | None = None
    bucket: str = field(init=False)
    prefix: str = field(init=False)
    _client: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        uri = str(self.uri).rstrip("/")
        if not uri.startswith("s3://"):
            raise ValueError(f"not an s3:// serving root: {uri!r}")
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"no bucket in {uri!r}: s3://bucket/prefix")
        self.uri, self.bucket, self.prefix = uri, bucket, prefix.strip("/")
        self.endpoint_url = self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        self.region = self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
        if self.cache_dir is None:
            # The endpoint is part of the identity: one bucket name on two stores is two roots.
            digest = hashlib.sha256(f"{self.endpoint_url or ''}|{self.uri}".encode()).hexdigest()[:16]
            self.cache_dir = default_cache_base(self.cache_base) / f"{self.bucket}-{digest}"
        self.cache_dir = Path(self.cache_dir).absolute()

    def __str__(self) -> str:
        return self.uri

    # --- keys -------------------------------------------------------------------------------
    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def manifest_key(self, seq: int) -> str:
        return self.key(f"{MANIFESTS}/v{seq:08d}.json")

    def data_key(self, seq: int, token: str, rel: str) -> str:
        return self.key(f"v{seq:08d}/{token}/{rel}")

    # --- calls ------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3", endpoint_url=self.endpoint_url, region_name=self.region or "us-east-1",
                config=Config(retries={"max_attempts": 5, "mode": "standard"}))
        return self._client

    def _list(self, prefix: str) -> Iterator[dict[str, Any]]:
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Contents", ())

    def list_manifests(self) -> dict[int, str]:
        """{seq: the manifest's ETag} of every published version: one LIST per 1,000 versions."""
        base = self.key(f"{MANIFESTS}/")
        out = {}
        for obj in self._list(base):
            m = _MANIFEST_KEY_RE.match(obj["Key"][len(base):])
            if m:
                out[int(m.group(1))] = obj["ETag"]
        return out

    def list_data(self) -> Iterator[tuple[int, str, str, datetime]]:
        """(seq, token, key, last modified) of every version file in the bucket."""
        base = self.key("")
        for obj in self._list(base + "v"):
            m = _DATA_KEY_RE.match(obj["Key"][len(base):])
            if m:
                yield int(m.group(1)), m.group(2), obj["Key"], obj["LastModified"]

    def get(self, key: str) -> bytes:
        """The object's bytes; FileNotFoundError when there is none."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"s3://{self.bucket}/{key}") from None

    def download(self, key: str, path: Path) -> None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"s3://{self.bucket}/{key}") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            for chunk in iter(lambda: body.read(1 << 20), b""):
                f.write(chunk)

    def upload(self, path: Path, key: str) -> None:
        with open(path, "rb") as f:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=f)

    def put_if_absent(self, key: str, body: bytes) -> bool:
        """Create ``key`` only if no object has it (``If-None-Match: *``): True if this call
        created it, False if one existed. S3 answers 412 to the loser of a race; 409 while a
        concurrent conditional write to the key is in flight (retried: it then resolves to 412)."""
        from botocore.exceptions import ClientError

        for attempt in range(6):
            try:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*")
                return True
            except ClientError as e:
                status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                code = e.response.get("Error", {}).get("Code")
                if status == 412 or code == "PreconditionFailed":
                    return False
                if (status == 409 or code == "ConditionalRequestConflict") and attempt < 5:
                    time.sleep(0.05 * 2**attempt)
                    continue
                raise
        return False  # unreachable: the last attempt returns or raises

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body)

    def delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):  # DeleteObjects takes 1,000 keys a call
            batch = keys[i:i + 1000]
            self.client.delete_objects(Bucket=self.bucket,
                                       Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})

    def delete_prefix(self, rel: str) -> None:
        self.delete([obj["Key"] for obj in self._list(self.key(rel))])
