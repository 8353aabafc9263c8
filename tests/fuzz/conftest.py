"""Shared settings and the tally of fuzz inputs.

CI runs each property with a small ``max_examples`` so the suite stays short;
``TIKTOK_FUZZ_EXAMPLES=N`` (``make fuzz``) runs every property with N examples instead. Each test
records how many inputs it tried (and how many lines, files or requests they held); at the end of
the session the totals are written to ``fuzz_summary.json`` in pytest's base temp dir (or to
``$TIKTOK_FUZZ_SUMMARY``) and printed (visible with ``-s``).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings


def examples(ci_default: int) -> int:
    return int(os.environ.get("TIKTOK_FUZZ_EXAMPLES") or ci_default)


def fuzz_settings(ci_default: int) -> settings:
    # No deadline: one example ingests files or makes HTTP calls on a shared 2-core machine.
    return settings(max_examples=examples(ci_default), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])


class Tally:
    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def add(self, test: str, **counts: int) -> None:
        for k, v in counts.items():
            self.counts[test][k] += v

    def summary(self) -> dict:
        tests = {t: dict(c) for t, c in sorted(self.counts.items())}
        return {
            "examples_setting": os.environ.get("TIKTOK_FUZZ_EXAMPLES") or "CI defaults",
            "tests": tests,
            # Every input counted here went through all of its test's assertions: a crash, a leak
            # or a lost line fails the test instead of being counted.
            "total_inputs": sum(c.get("inputs", 0) for c in tests.values()),
        }


@pytest.fixture(scope="session")
def tally(tmp_path_factory):
    t = Tally()
    yield t
    summary = t.summary()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    path = Path(os.environ.get("TIKTOK_FUZZ_SUMMARY")
                or tmp_path_factory.getbasetemp() / f"fuzz_summary{'-' + worker if worker else ''}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1))
    print(f"\nfuzz summary ({path}):\n{json.dumps(summary, indent=1)}")
