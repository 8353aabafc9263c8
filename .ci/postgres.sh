# Sourced by .ci/run: a throwaway PostgreSQL for tests/ops_pg (the production instance's storage).
# Installs Debian's package when it is missing, starts a cluster in a temp dir on a free port
# (trust auth, 127.0.0.1 only), exports DAGSTER_PG_* (what dagster.postgres.yaml reads) and
# stops the server when the calling shell exits. PostgreSQL refuses to run as root: under root the
# server runs as the `postgres` user that Debian's package creates.

_pg_bin() {
    # Debian keeps initdb/pg_ctl in /usr/lib/postgresql/<version>/bin, off PATH; newest first.
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return
    fi
    { ls -d /usr/lib/postgresql/*/bin 2>/dev/null || true; } | sort -V | tail -n 1
}

if [ -z "$(_pg_bin)" ] || [ ! -x "$(_pg_bin)/initdb" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
PG_BIN="$(_pg_bin)"

if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postgres
    _pg_as() { runuser -u postgres -- "$@"; }
else
    _pg_as() { "$@"; }
fi

PG_ROOT="$(mktemp -d /tmp/tiktok-ci-pg.XXXXXX)"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$PG_ROOT"; fi
PG_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

_pg_stop() {
    _pg_as "$PG_BIN/pg_ctl" -D "$PG_ROOT/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_ROOT"
}
trap _pg_stop EXIT

_pg_as "$PG_BIN/initdb" -D "$PG_ROOT/data" -U postgres --auth=trust -E UTF8 --no-instructions >/dev/null
_pg_as "$PG_BIN/pg_ctl" -D "$PG_ROOT/data" -l "$PG_ROOT/server.log" -w -t 60 \
    -o "-p $PG_PORT -k $PG_ROOT -c listen_addresses=127.0.0.1" start >/dev/null \
    || { cat "$PG_ROOT/server.log"; exit 1; }
_pg_as "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres dagster

export DAGSTER_PG_HOST=127.0.0.1 DAGSTER_PG_PORT="$PG_PORT" DAGSTER_PG_USER=postgres \
    DAGSTER_PG_PASSWORD= DAGSTER_PG_DB=dagster
echo "$("$PG_BIN/postgres" --version) on 127.0.0.1:$PG_PORT, database dagster"
