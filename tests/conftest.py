"""Suite-wide test hygiene, and the S3 endpoint fixtures (tests/s3.py) for every test package."""

from __future__ import annotations

import pytest

from tests.s3 import lake_root, s3_endpoint, s3_env  # noqa: F401  (fixtures, registered here)


@pytest.fixture(autouse=True)
def _no_stale_defs_state_storage():
    """Dagster keeps "the current defs state storage" in a context variable that entering a
    DagsterInstance sets, holding only a weak reference to that instance. A test that entered
    an instance and let it go can leave the variable pointing at a collected instance; the next
    test in the same worker that loads the code location then fails with "Attempted to resolve
    undefined DagsterInstance weakref" (seen in CI under -n 2). Start every test without one:
    loading definitions without a state storage is Dagster's normal path outside a daemon."""
    from dagster._core.storage.defs_state.base import _current_storage

    _current_storage.set(None)
    yield
