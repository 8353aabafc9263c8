"""TTL expiry: rows idle longer than a table's TTL are evicted (Monolith §3.2.2).

Ids such as videos and campaigns stop appearing; their rows would otherwise hold memory forever.
Idle means no training occurrence and no gradient update: ``last_update_s`` is refreshed by both.
Expiry runs on demand and at every export, never inside a training step (rows must not vanish
between forward and the optimizer step). Every eviction is recorded: the ids go into the next
delta as deletions, and an ``EvictionLog`` keeps totals for monitoring.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tiktok_pipelines.embedding.storage import LIVE


def expired_rows(last_update_s: np.ndarray, flags: np.ndarray, now_s: int, ttl_seconds: int) -> np.ndarray:
    """int64 rows that are live and idle for more than ttl_seconds at now_s.

    A sequential scan over the row arrays (numpy, memory-bandwidth bound: ~10 ms per 10M rows);
    scanning rows rather than the map is why storage keeps ``row_ids``.
    """
    idle_s = np.int64(now_s) - last_update_s
    return np.flatnonzero((idle_s > ttl_seconds) & ((flags & LIVE) != 0)).astype(np.int64)


@dataclass
class EvictionLog:
    """Running record of expiry: what went, when, and in total."""

    total_evicted: int = 0
    runs: list[tuple[int, int]] = field(default_factory=list)  # (now_s, n_evicted), latest last
    max_runs_kept: int = 1000

    def record(self, now_s: int, n_evicted: int) -> None:
        self.total_evicted += int(n_evicted)
        self.runs.append((int(now_s), int(n_evicted)))
        if len(self.runs) > self.max_runs_kept:
            del self.runs[: len(self.runs) - self.max_runs_kept]
