"""Operating policies that the domain assets attach: retries on transient failures, freshness
windows for what analysts and the model server read, and the online model's lag window.

Plain objects, not definitions (the defs loader collects nothing from this module); the domain
modules import them, so each asset's decorator shows its own policy. The settings come from the
environment when the code location loads; ``docs/operations.md`` lists them with their defaults.

Retries: Dagster's ``RetryPolicy`` retries on *any* exception. A data error (a SQL model that does
not bind, a landing path outside the landing zone, a schema mismatch) fails the same way every
time, so retrying it only delays the alert. ``retry_only_transient`` wraps an asset's function:
errors known to be transient (a DuckDB file lock held by another process, EAGAIN/EBUSY/EIO/ESTALE
and timeouts from the file system) propagate and the policy retries them, with exponential backoff;
anything else becomes ``dg.Failure(allow_retries=False)`` and fails the step at its first attempt.
"""

import contextlib
import errno
import functools
import inspect
import os
from dataclasses import dataclass
from datetime import timedelta

import dagster as dg
import duckdb

# Run statuses of a run that may still do its work: a schedule or sensor that must not ask for the
# same work twice looks for these.
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None


# --- retries ---------------------------------------------------------------------------------------

RETRY_MAX = int(_number("TIKTOK_RETRY_MAX", 3))
RETRY_DELAY_S = _number("TIKTOK_RETRY_DELAY_S", 5.0)

# Warehouse writers, ingestion, the catalog, online updates: idempotent steps, cheap to re-run.
# Attempt n waits (2^n - 1) * delay +- delay: with the defaults 0-10 s, 10-20 s, 30-40 s, so a
# lock or an NFS hiccup of up to about a minute is ridden out; then the step fails and alerts.
TRANSIENT_RETRY = dg.RetryPolicy(
    max_retries=RETRY_MAX,
    delay=RETRY_DELAY_S,
    backoff=dg.Backoff.EXPONENTIAL,
    jitter=dg.Jitter.PLUS_MINUS,  # two writers that failed together do not retry together
)

# The daily retrain: a retry trains both models again (minutes of CPU), so one retry, later.
TRAINING_RETRY = dg.RetryPolicy(
    max_retries=1,
    delay=6 * RETRY_DELAY_S,
    backoff=dg.Backoff.EXPONENTIAL,
    jitter=dg.Jitter.PLUS_MINUS,
)

# errno values that say "try again" rather than "this input is wrong".
TRANSIENT_ERRNOS = frozenset({
    errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.EIO, errno.ETIMEDOUT, errno.ESTALE,
    errno.ENFILE, errno.EMFILE, errno.ENOLCK,
    errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.EHOSTUNREACH, errno.ENETUNREACH,
})


def _chain(exc: BaseException | None):
    """The exception and its causes, as a traceback prints them (explicit cause, else the context
    unless suppressed)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ if exc.__cause__ is not None else (
            None if exc.__suppress_context__ else exc.__context__)


def is_transient(exc: BaseException) -> bool:
    """True when the error (or one it was raised from) may go away by itself: a DuckDB file lock
    held by another process, a timeout or a connection error, an OSError whose errno says "again".
    Not a full disk (ENOSPC: nothing frees it within a minute), not a missing file (ENOENT)."""
    for e in _chain(exc):
        if isinstance(e, duckdb.IOException) and "lock" in str(e).lower():
            return True  # 'Could not set lock on file ...: Conflicting lock is held in ...'
        if isinstance(e, (TimeoutError, ConnectionError, InterruptedError, BlockingIOError)):
            return True
        if isinstance(e, OSError) and e.errno in TRANSIENT_ERRNOS:
            return True
    return False


def _not_retried(exc: Exception) -> dg.Failure:
    return dg.Failure(
        description=f"{type(exc).__name__}: {exc}",
        allow_retries=False,
        metadata={"error_type": type(exc).__name__, "transient": False},
    )


@contextlib.contextmanager
def _transient_only():
    """The classification ``retry_only_transient`` applies, for plain and generator asset functions
    alike: transient errors and Dagster's own propagate, anything else becomes a non-retried Failure."""
    try:
        yield
    except (dg.Failure, dg.DagsterError, dg.RetryRequested):
        raise
    except Exception as e:
        if is_transient(e):
            raise
        raise _not_retried(e) from e


def retry_only_transient(fn):
    """Wrap an asset function so that its RetryPolicy applies to transient errors only: any other
    exception is re-raised as ``dg.Failure(allow_retries=False)`` (its message and type kept, the
    original chained as the cause). Dagster's own errors and explicit ``Failure``s pass unchanged.

    Apply it under ``@dg.asset(..., retry_policy=...)``; ``functools.wraps`` keeps the signature
    Dagster reads (context, config and resource parameters)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args, **kwargs):
            with _transient_only():
                return (yield from fn(*args, **kwargs))

        return generator

    @functools.wraps(fn)
    def function(*args, **kwargs):
        with _transient_only():
            return fn(*args, **kwargs)

    return function


# --- freshness -------------------------------------------------------------------------------------

def _window(prefix: str, warn_min: float, fail_min: float) -> dg.FreshnessPolicy:
    """A time-window policy: WARN once the last materialization is older than ``<prefix>_WARN_MIN``
    minutes, FAIL once older than ``<prefix>_FAIL_MIN``."""
    warn = timedelta(minutes=_number(f"{prefix}_WARN_MIN", warn_min))
    fail = timedelta(minutes=_number(f"{prefix}_FAIL_MIN", fail_min))
    if warn >= fail:
        raise ValueError(f"{prefix}_WARN_MIN ({warn}) must be below {prefix}_FAIL_MIN ({fail})")
    return dg.FreshnessPolicy.time_window(fail_window=fail, warn_window=warn)


# analytics_db and every mart: rebuilt by the hourly analytics job. One missed hour warns, two fail.
ANALYTICS_FRESHNESS = _window("TIKTOK_FRESHNESS_ANALYTICS", 120, 180)
# batch_rankers: the 03:00 retrain. Late by two hours warns, a missed day fails.
BATCH_MODEL_FRESHNESS = _window("TIKTOK_FRESHNESS_BATCH", 26 * 60, 30 * 60)


@dataclass(frozen=True)
class LagWindow:
    """How far a model may trail the events that arrived before it is stale: WARN past ``warn``,
    FAIL past ``fail``. Measured in the events' time, not since the model's last update: a model
    with no new events to learn from is up to date however long ago it was published."""

    warn: timedelta
    fail: timedelta


def _lag(prefix: str, warn_min: float, fail_min: float) -> LagWindow:
    warn = timedelta(minutes=_number(f"{prefix}_WARN_MIN", warn_min))
    fail = timedelta(minutes=_number(f"{prefix}_FAIL_MIN", fail_min))
    if warn >= fail:
        raise ValueError(f"{prefix}_WARN_MIN ({warn}) must be below {prefix}_FAIL_MIN ({fail})")
    return LagWindow(warn=warn, fail=fail)


# online_ranker: not a time-window policy. Dagster's evaluates the time since the last
# materialization, so on an idle instance (no events, nothing to learn) it warned after 15 minutes
# and failed after an hour. The check `online_ranker:follows_events` (defs/training) compares the
# newest ingested flush time with what the published online model is trained through instead:
# quiet while no event arrives, WARN when the events are 15 minutes ahead of the model, FAIL at an hour.
ONLINE_MODEL_LAG = _lag("TIKTOK_FRESHNESS_ONLINE", 15, 60)
