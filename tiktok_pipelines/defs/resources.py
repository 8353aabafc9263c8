"""Resources shared by every domain: where files live, the warehouse connection, and the policies.

Paths and rates are configuration: every ``TIKTOK_*`` setting is a field of one of these resources,
its default and environment variable listed once in ``tiktok_pipelines/settings.py``.
``default_resources()`` binds each such field to ``dg.EnvVar`` where its variable is set (Dagster
resolves it when a run or a sensor tick starts), so the same code runs on a laptop's ``./data`` or
on a mounted shared volume without edits. ``TIKTOK_LAKE_URI=s3://bucket/prefix`` puts the lake's
Delta tables on object storage. Nothing here reads the environment at import time.
"""

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import dagster as dg
import duckdb

from tiktok_pipelines import settings
from tiktok_pipelines import layout
from tiktok_pipelines.ingest.engine import IngestSettings
from tiktok_pipelines.paths import package_data
from tiktok_pipelines.serving.objectstore import S3Root
from tiktok_pipelines.tables import TableStore
from tiktok_pipelines.training.joiner import JoinerConfig
from tiktok_pipelines.training.stream_join import StreamConfig



class WarehouseResource(dg.ConfigurableResource):
    """warehouse.duckdb, opened for one step: ``connect()`` read-write (the writers, in the
    ``duckdb_warehouse`` pool), ``connect(read_only=True)`` for steps that only read. The connection
    closes when the block ends. ``PlatformStorage.warehouse_db`` gives the one at its path."""

    path: str

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        path = Path(self.path)
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(path), read_only=read_only)
        try:
            yield con
        finally:
            con.close()


class PlatformStorage(dg.ConfigurableResource):
    """The platform's file layout. Everything defaults to folders under ``data_dir``."""

    data_dir: str = settings.default("TIKTOK_DATA_DIR")
    landing_dir: str | None = None
    lake_dir: str | None = None
    # The lake's Delta tables on S3-compatible object storage: "s3://bucket/prefix" (default: the
    # local ``lake`` folder). Endpoint and region here or in AWS_ENDPOINT_URL / AWS_REGION;
    # credentials only from the AWS environment (docs/deployment.md). The derived tables (training
    # examples, features, content tags, the catalog's dims, the online path's tables) are Delta
    # tables beside the events, there too.
    lake_uri: str | None = settings.default("TIKTOK_LAKE_URI")
    lake_endpoint_url: str | None = None
    lake_region: str | None = None
    catalog_dir: str | None = None
    # The serving versions on object storage: "s3://bucket/prefix" (default: the local ``serving``
    # folder). Endpoint and region from AWS_ENDPOINT_URL / AWS_REGION, credentials from the AWS
    # environment; readers and writers keep a local copy of each version they use.
    serving_uri: str | None = settings.default("TIKTOK_SERVING_URI")
    # Where those local copies go (one folder per bucket and prefix under it); None: the serving
    # store's default (``serving/objectstore.py``: ``$XDG_CACHE_HOME`` or ``~/.cache``).
    serving_cache: str | None = settings.default("TIKTOK_SERVING_CACHE")
    warehouse_path: str | None = None
    analytics_path: str | None = None

    def _under(self, override: str | None, name: str) -> Path:
        return Path(override) if override else Path(self.data_dir) / name

    @property
    def landing(self) -> Path:
        return self._under(self.landing_dir, layout.LANDING).absolute()

    @property
    def lake(self) -> Path:
        return self._under(self.lake_dir, layout.LAKE).absolute()

    @property
    def lake_location(self) -> str:
        """Where the lake's Delta tables live: ``lake_uri``, else the local ``lake`` folder."""
        return self.lake_uri or str(self.lake)

    @property
    def lake_store(self) -> TableStore:
        return TableStore.from_config(self.lake_location, endpoint_url=self.lake_endpoint_url,
                                      region=self.lake_region)

    @property
    def catalog(self) -> Path:
        return self._under(self.catalog_dir, layout.CATALOG).absolute()

    @property
    def warehouse(self) -> Path:
        return self._under(self.warehouse_path, layout.WAREHOUSE_DB).absolute()

    @property
    def warehouse_db(self) -> WarehouseResource:
        """The warehouse as a resource: ``with storage.warehouse_db.connect() as con: ...``."""
        return WarehouseResource(path=str(self.warehouse))

    @property
    def analytics(self) -> Path:
        return self._under(self.analytics_path, layout.ANALYTICS_DB).absolute()

    @property
    def models(self) -> Path:
        return (Path(self.data_dir) / layout.MODELS).absolute()

    @property
    def serving(self) -> Path:
        return (Path(self.data_dir) / layout.SERVING).absolute()

    @property
    def serving_location(self) -> str | S3Root:
        """Where the serving versions are published and read: ``serving_uri`` (opened with its
        local copies under ``serving_cache``), else the local ``serving`` folder (the serving
        store takes either)."""
        if not self.serving_uri:
            return str(self.serving)
        from tiktok_pipelines.serving.store import location  # numpy and the embedding tables: on use

        return location(self.serving_uri, cache_base=self.serving_cache)

    @property
    def alerts(self) -> Path:
        """The alert log the run-failure sensor appends to (one JSON object per line)."""
        return (Path(self.data_dir) / "alerts" / "alerts.jsonl").absolute()


class IngestPolicy(dg.ConfigurableResource):
    """How strict ingestion is and how much one run takes on."""

    future_skew_seconds: int = settings.default("TIKTOK_FUTURE_SKEW_SECONDS")
    # How far a file's flush time (and so any event) may be ahead of the wall clock; None: the
    # future skew. The online watermark has the same bound. Only a replay of a world dated ahead
    # of the clock (benchmarks/soak.py) widens it.
    max_flush_ahead_seconds: int | None = None
    max_lateness_days: int = settings.default("TIKTOK_MAX_LATENESS_DAYS")
    # the sensor groups new files into runs of at most this many
    files_per_run: int = settings.default("TIKTOK_FILES_PER_RUN")
    sensor_grace_s: float = 120.0  # the sensor re-examines files that arrived this long before its mark
    # Every this many seconds the sensor also requests any landing file behind its window that is
    # neither ingested nor in a queued/running run (a clock step, a run that failed for good); 0: never.
    sensor_sweep_s: float = settings.default("TIKTOK_SENSOR_SWEEP_S")
    chunk_mb: int = 256  # landing bytes validated per pass (bounds a run's memory)
    duckdb_threads: int = 0  # 0: one per core
    # Type the plain lines in the compiled single pass (ingest/fastpath.py); off: every line
    # through DuckDB's JSON parser (same rows, ~25% slower; a fallback, and for comparison).
    compiled_typing: bool = True

    @property
    def clock_ahead_seconds(self) -> int:
        """How far event time may run ahead of the wall clock (ingest and online watermark)."""
        return self.future_skew_seconds if self.max_flush_ahead_seconds is None else self.max_flush_ahead_seconds

    def settings(self) -> IngestSettings:
        return IngestSettings(
            future_skew_seconds=self.future_skew_seconds,
            max_flush_ahead_seconds=self.max_flush_ahead_seconds,
            max_lateness_days=self.max_lateness_days,
            chunk_bytes=self.chunk_mb * 1024 * 1024,
            duckdb_threads=self.duckdb_threads or None,
            compiled_typing=self.compiled_typing,
        )


class JoinerPolicy(dg.ConfigurableResource):
    """How impressions become labelled examples (see ``training/joiner.py`` for the labels)."""

    label_window_s: int = settings.default("TIKTOK_LABEL_WINDOW_S")
    engaged_watch_ratio: float = 0.8
    negative_rate: float = settings.default("TIKTOK_NEGATIVE_RATE")
    history_window_s: int = 86_400
    seed: int = 0
    # The streaming joiner's watermark trails the newest event time by this much: events up to
    # this far behind still label on time; later ones are counted as late (training/stream_join.py).
    allowed_lateness_s: int = 120

    def stream(self) -> StreamConfig:
        return StreamConfig(allowed_lateness_s=self.allowed_lateness_s)

    def config(self) -> JoinerConfig:
        return JoinerConfig(
            label_window_s=self.label_window_s,
            engaged_watch_ratio=self.engaged_watch_ratio,
            negative_rate=self.negative_rate,
            history_window_s=self.history_window_s,
            seed=self.seed,
        )


class TrainingPolicy(dg.ConfigurableResource):
    """Batch retraining: model sizes, and how much worse a challenger may be and still win."""

    # a challenger within this AUC of the champion is promoted
    promotion_margin_auc: float = settings.default("TIKTOK_PROMOTION_MARGIN_AUC")
    lgbm_rounds: int = 100
    torch_dim: int = 16
    torch_batch_size: int = 1024
    keep_full_snapshots: int = 3  # serving directory retention
    online_batch_size: int = 512
    online_dense_every_s: int = 600  # event time between two online versions that carry the dense weights
    online_full_every: int = 200  # versions after a full one before an online update publishes a full
    # Monolith's count filter on the torch ranker's id tables: an id gets rows at its Nth training
    # occurrence (before, it reads the prior). Its counts live in the checkpoint and the serving
    # versions, so an online update continues them. None: every id is admitted at once.
    torch_admit_min_count: int | None = 2
    # An online update may expire at most this share of a served table's rows; more fails the run
    # (MassExpiry: a clock gone wrong would otherwise empty every server). A run that means it
    # sets allow_mass_expiry (run config), once. (The daily retrain publishes a fresh model, whose
    # export is not an update of the served rows: not guarded.)
    max_expire_fraction: float = 0.2
    allow_mass_expiry: bool = False


class OpsPolicy(dg.ConfigurableResource):
    """Retries and freshness windows (``defs/ops/policies.py``). Dagster takes retry and freshness
    policies as decorator arguments, so these are read when the code location loads
    (``policies.py`` builds them from ``from_environment(OpsPolicy, "ops_policy")``); the resource
    shows the values in the UI and gives them to a step that asks (the online lag check's window)."""

    retry_max: int = settings.default("TIKTOK_RETRY_MAX")
    retry_delay_s: float = settings.default("TIKTOK_RETRY_DELAY_S")
    freshness_analytics_warn_min: float = settings.default("TIKTOK_FRESHNESS_ANALYTICS_WARN_MIN")
    freshness_analytics_fail_min: float = settings.default("TIKTOK_FRESHNESS_ANALYTICS_FAIL_MIN")
    freshness_batch_warn_min: float = settings.default("TIKTOK_FRESHNESS_BATCH_WARN_MIN")
    freshness_batch_fail_min: float = settings.default("TIKTOK_FRESHNESS_BATCH_FAIL_MIN")
    freshness_online_warn_min: float = settings.default("TIKTOK_FRESHNESS_ONLINE_WARN_MIN")
    freshness_online_fail_min: float = settings.default("TIKTOK_FRESHNESS_ONLINE_FAIL_MIN")


class DbtLikeProject(dg.ConfigurableResource):
    """The dbt-like SQL models' folder (as dagster-dbt's ``DbtProject`` names a dbt project). Its
    models become assets, so, like ``OpsPolicy``, it is read when the code location loads
    (``defs/dbt_like/external.py``: ``from_environment(DbtLikeProject, "dbt_like")``); a change
    needs a reload. The resource shows the folder in the UI."""

    models_dir: str | None = settings.default("TIKTOK_MODELS_DIR")  # None: the package's dbt_like_models/

    @property
    def models_path(self) -> Path:
        return Path(self.models_dir) if self.models_dir else package_data("dbt_like_models")


RESOURCE_CLASSES: dict[str, type[dg.ConfigurableResource]] = {
    "storage": PlatformStorage,
    "ingest_policy": IngestPolicy,
    "joiner_policy": JoinerPolicy,
    "training_policy": TrainingPolicy,
    "ops_policy": OpsPolicy,
    "dbt_like": DbtLikeProject,
}


def _bound(setting: settings.Setting, environ: Mapping[str, str]):
    """The field's value in the Definitions: ``dg.EnvVar`` when its variable is set (Dagster resolves
    it when a run starts, and the UI shows the variable's name), else the table's default. Dagster
    has string, int and bool sources only: a float setting is parsed here, when the location loads."""
    raw = environ.get(setting.env)
    if raw is None or raw == "":
        return setting.default
    value = settings.parse(setting, raw)  # a bad value fails the load, naming the variable
    if setting.kind is str:
        return dg.EnvVar(setting.env)
    if setting.kind is int:
        return dg.EnvVar.int(setting.env)
    return value


def from_environment(cls: type[dg.ConfigurableResource], key: str,
                     environ: Mapping[str, str] | None = None, *, resolved: bool = True):
    """Resource ``key`` of class ``cls`` with each of its settings from the environment (now).
    ``resolved``: plain values (what load-time readers need); else ``dg.EnvVar`` bindings."""
    environ = os.environ if environ is None else environ
    fields = {s.field: (settings.value(s.env, environ) if resolved else _bound(s, environ))
              for s in settings.for_resource(key)}
    return cls(**fields)


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """Every resource the assets use, each ``TIKTOK_*`` field bound to its environment variable."""
    return {key: from_environment(cls, key, resolved=False) for key, cls in RESOURCE_CLASSES.items()}


def resolved(resource: dg.ConfigurableResource) -> dg.ConfigurableResource:
    """A resource of the Definitions with its ``dg.EnvVar`` fields resolved (for code outside a run:
    the CLI's summary, a backfill that reads the storage layout)."""
    return resource.process_config_and_initialize()


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=default_resources())
