# Everything a newcomer or CI needs, from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export TIKTOK_DATA_DIR ?= $(CURDIR)/$(DATA)

# Quick-start scale: a week of a 10k-user, 20k-video platform (~2M events).
USERS ?= 10000
VIDEOS ?= 20000
DAYS ?= 7
EVENTS_PER_DAY ?= 300000

.PHONY: setup dagster-home install-check quickstart simulate simulate-more run dev serve experiments test test-fast bench bench-ingest bench-simulator bench-embedding bench-freshness bench-freshness-daemon bench-analytics bench-serving bench-jobs soak fuzz faults clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $@

dagster-home:
	mkdir -p "$(DAGSTER_HOME)"
	cp dagster.yaml "$(DAGSTER_HOME)/dagster.yaml"

## install-check: the quick start's main job from a non-editable install (pip install --target), outside the repo
install-check: setup
	PYTHON=$(BIN)/python .ci/install-check

## quickstart: set up, simulate a week, run the main job end to end (build_all)
quickstart: setup dagster-home simulate run

# A world is simulated once per data dir; `make clean` starts over, `make simulate-more` adds a day.
simulate: setup
	@if [ -f "$(TIKTOK_DATA_DIR)/truth/world.json" ]; then \
		echo "$(TIKTOK_DATA_DIR) already holds a simulated world: skipping (make clean to start over)"; \
	else \
		$(BIN)/tiktok-pipelines simulate --out "$(TIKTOK_DATA_DIR)" --users $(USERS) --videos $(VIDEOS) \
			--days $(DAYS) --events-per-day $(EVENTS_PER_DAY); \
	fi

simulate-more: setup
	$(BIN)/tiktok-pipelines simulate --out "$(TIKTOK_DATA_DIR)" --users $(USERS) --videos $(VIDEOS) \
		--days 1 --first-day next --events-per-day $(EVENTS_PER_DAY)

run: setup dagster-home
	$(BIN)/tiktok-pipelines run build_all

## dev: the Dagster UI on http://127.0.0.1:3000 (sensors pick up new landing files)
dev: setup dagster-home
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

## serve: the model server on http://127.0.0.1:8000 (/recommend?user_id=&k=, /healthz, /version)
serve: setup
	$(BIN)/tiktok-pipelines serve --data-dir "$(TIKTOK_DATA_DIR)" --port 8000

## experiments: Monolith's (a) sync intervals, (b) collisionless vs hashing, (d) closed loop on data/,
## then (c) freshness; tables on stdout, JSON and PNG plots in data/experiments/
experiments: setup
	$(BIN)/tiktok-pipelines experiment --data-dir "$(TIKTOK_DATA_DIR)"
	$(BIN)/python benchmarks/freshness.py --rounds $(or $(ROUNDS),12) --out-dir "$(TIKTOK_DATA_DIR)/experiments"

## test: the whole suite, end-to-end tests included (what CI runs)
test: setup
	$(BIN)/pytest -q -n 2 --dist loadfile

## test-fast: unit tests only
test-fast: setup
	$(BIN)/pytest -q -n 2 --dist loadfile -m "not slow"

## fuzz: every fuzz property of tests/fuzz with FUZZ_EXAMPLES inputs each (default 1000; CI runs a few
## hundred); the totals are printed and written to $(DATA)/fuzz_summary.json
fuzz: setup
	TIKTOK_FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),1000) TIKTOK_FUZZ_SUMMARY="$(TIKTOK_DATA_DIR)/fuzz_summary.json" \
		$(BIN)/pytest -q -s -p no:xdist tests/fuzz

## faults: kill -9 of an ingest, an online update, the snapshot publisher and a server mid-reload; a full
## lake disk (a tmpfs: needs root); corrupted versions. Each ends in an exactly-once / last-good audit.
faults: setup
	$(BIN)/pytest -q -s -p no:xdist tests/faults tests/ingest/test_kill9.py tests/ingest/test_landing_and_recovery.py \
		tests/serving/test_store.py tests/serving/test_hostile_versions.py tests/serving/test_server.py::test_a_corrupt_version_is_not_served

bench: bench-simulator bench-ingest bench-embedding bench-analytics

bench-ingest: setup
	$(BIN)/python benchmarks/ingest.py $(if $(EVENTS),--events $(EVENTS),) $(INGEST_ARGS)

bench-simulator: setup
	$(BIN)/python benchmarks/simulator.py $(if $(EVENTS),--events $(EVENTS),)

bench-embedding: setup
	$(BIN)/python benchmarks/embedding_table.py $(if $(KEYS),--keys $(KEYS),)

## bench-analytics: one simulated day (EVENTS, default 10M) through tagging, features and every mart
bench-analytics: setup
	$(BIN)/python benchmarks/analytics.py --events $(or $(EVENTS),10000000)

## bench-freshness: landing -> sensors -> ingest -> online update -> delta served (p50/p95 seconds)
bench-freshness: setup
	$(BIN)/python benchmarks/freshness.py --rounds $(or $(ROUNDS),12)

## bench-freshness-daemon: the same, driven end to end by a real dagster-daemon (sensors, run queue, run processes)
bench-freshness-daemon: setup
	$(BIN)/python benchmarks/freshness.py --daemon --rounds $(or $(ROUNDS),12)

## bench-serving: /recommend over real HTTP (the CLI's server), 8 clients, LightGBM re-rank of 100 of
## 20k videos: rps, p50/p99 ms. Builds a small model unless SERVING_DATA names a data dir (make quickstart's)
bench-serving: setup
	$(BIN)/python benchmarks/serving.py $(if $(SERVING_DATA),--data-dir "$(SERVING_DATA)",) $(if $(REQUESTS),--requests $(REQUESTS),)

## bench-jobs: hourly_analytics_job, ingest_job and a one-asset materialisation launched as the UI launches
## them (dagster dev: run queue, dagster-daemon, run workers) on a small world: wall time vs the steps' work
bench-jobs: setup
	$(BIN)/python benchmarks/jobs.py $(JOBS_ARGS)

## soak: MINUTES (default 5) of everything at once (simulator streaming, dagster-daemon's sensors
## ingesting and training online, analysts querying, a client calling the server), then an exactly-once
## audit; JSON last line. SOAK_ARGS=--in-process ticks the sensors in process instead of the daemon.
soak: setup
	$(BIN)/python benchmarks/soak.py --minutes $(or $(MINUTES),5) $(SOAK_ARGS)

clean:
	rm -rf "$(TIKTOK_DATA_DIR)" "$(DAGSTER_HOME)"
