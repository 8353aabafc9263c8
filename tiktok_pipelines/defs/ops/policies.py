"""Operating policies that the domain assets attach: retries on transient failures, freshness
windows for what analysts and the model server read, and the online model's lag window.

Plain objects, not definitions (the defs loader collects nothing from this module); the domain
modules import them, so each asset's decorator shows its own policy. Their settings are the
``ops_policy`` resource's fields (``defs/resources.py``; defaults in ``tiktok_pipelines/settings.py``,
listed in ``docs/operations.md``). Dagster takes retry and freshness policies as decorator
arguments, so they are built from the environment when an asset module asks for one, i.e. when the
code location loads, not when this module is imported: ``TRANSIENT_RETRY`` and the others are
computed by the module's ``__getattr__`` on each ``from ... import``.

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
from dataclasses import dataclass
from datetime import timedelta

import dagster as dg
import duckdb

from tiktok_pipelines.defs.resources import OpsPolicy, from_environment

# Run statuses of a run that may still do its work: a schedule or sensor that must not ask for the
# same work twice looks for these.
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]


def ops_policy() -> OpsPolicy:
    """The retry and freshness settings as the environment has them now."""
    return from_environment(OpsPolicy, "ops_policy")


# --- retries ---------------------------------------------------------------------------------------

def transient_retry(policy: OpsPolicy) -> dg.RetryPolicy:
    """Warehouse writers, ingestion, the catalog, online updates: idempotent steps, cheap to re-run.
    Attempt n waits (2^n - 1) * delay +- delay: with the defaults 0-10 s, 10-20 s, 30-40 s, so a
    lock or an NFS hiccup of up to about a minute is ridden out; then the step fails and alerts."""
    return dg.RetryPolicy(
        max_retries=policy.retry_max,
        delay=policy.retry_delay_s,
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,  # two writers that failed together do not retry together
    )


def training_retry(policy: OpsPolicy) -> dg.RetryPolicy:
    """The daily retrain: a retry trains both models again (minutes of CPU), so one retry, later."""
    return dg.RetryPolicy(
        max_retries=1,
        delay=6 * policy.retry_delay_s,
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

def _minutes(policy: OpsPolicy, name: str) -> tuple[timedelta, timedelta]:
    """The ``freshness_<name>_warn_min`` / ``_fail_min`` pair, refused unless warn < fail."""
    warn = timedelta(minutes=getattr(policy, f"freshness_{name}_warn_min"))
    fail = timedelta(minutes=getattr(policy, f"freshness_{name}_fail_min"))
    if warn >= fail:
        prefix = f"TIKTOK_FRESHNESS_{name.upper()}"
        raise ValueError(f"{prefix}_WARN_MIN ({warn}) must be below {prefix}_FAIL_MIN ({fail})")
    return warn, fail


def _window(policy: OpsPolicy, name: str) -> dg.FreshnessPolicy:
    """A time-window policy: WARN once the last materialization is older than the warn minutes,
    FAIL once older than the fail minutes."""
    warn, fail = _minutes(policy, name)
    return dg.FreshnessPolicy.time_window(fail_window=fail, warn_window=warn)


@dataclass(frozen=True)
class LagWindow:
    """How far a model may trail the events that arrived before it is stale: WARN past ``warn``,
    FAIL past ``fail``. Measured in the events' time, not since the model's last update: a model
    with no new events to learn from is up to date however long ago it was published."""

    warn: timedelta
    fail: timedelta


def online_model_lag(policy: OpsPolicy) -> LagWindow:
    warn, fail = _minutes(policy, "online")
    return LagWindow(warn=warn, fail=fail)


# The policies the domain modules import by name, built from the environment at that moment.
_POLICIES = {
    "RETRY_MAX": lambda p: p.retry_max,
    "RETRY_DELAY_S": lambda p: p.retry_delay_s,
    "TRANSIENT_RETRY": transient_retry,
    "TRAINING_RETRY": training_retry,
    # analytics_db and every mart: rebuilt by the hourly analytics job. One missed hour warns, two fail.
    "ANALYTICS_FRESHNESS": lambda p: _window(p, "analytics"),
    # batch_rankers: the 03:00 retrain. Late by two hours warns, a missed day fails.
    "BATCH_MODEL_FRESHNESS": lambda p: _window(p, "batch"),
    # online_ranker: not a time-window policy. Dagster's evaluates the time since the last
    # materialization, so on an idle instance (no events, nothing to learn) it warned after 15 minutes
    # and failed after an hour. The check `online_ranker:follows_events` (defs/training) compares the
    # newest ingested flush time with what the published online model is trained through instead:
    # quiet while no event arrives, WARN when the events are 15 minutes ahead of the model, FAIL at an hour.
    "ONLINE_MODEL_LAG": online_model_lag,
}


def __getattr__(name: str):
    """``from tiktok_pipelines.defs.ops.policies import TRANSIENT_RETRY`` (and the other names of
    ``_POLICIES``): the policy as the environment configures it when the importer asks (PEP 562)."""
    if name in _POLICIES:
        return _POLICIES[name](ops_policy())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

