"""A real PostgreSQL server for the production-instance tests: the one CI started, or our own.

``.ci/run`` starts Debian's PostgreSQL and exports ``DAGSTER_PG_HOST/PORT/USER/PASSWORD/DB``; the
tests use that server. Without those variables (a developer's machine) :class:`ThrowawayCluster`
runs ``initdb`` + ``pg_ctl`` itself in a temp dir on a free port, trust auth on 127.0.0.1 only,
and removes everything on exit. PostgreSQL refuses to run as root, so under root the server runs
as the ``postgres`` user that Debian's package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

ENV_VARS = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str
    password: str
    db: str

    @classmethod
    def from_env(cls) -> PgServer | None:
        if not os.environ.get("DAGSTER_PG_HOST"):
            return None
        return cls(
            host=os.environ["DAGSTER_PG_HOST"],
            port=int(os.environ.get("DAGSTER_PG_PORT", "5432")),
            user=os.environ.get("DAGSTER_PG_USER", "postgres"),
            password=os.environ.get("DAGSTER_PG_PASSWORD", ""),
            db=os.environ.get("DAGSTER_PG_DB", "postgres"),
        )

    def env(self) -> dict[str, str]:
        """The variables dagster.postgres.yaml reads."""
        return {"DAGSTER_PG_HOST": self.host, "DAGSTER_PG_PORT": str(self.port),
                "DAGSTER_PG_USER": self.user, "DAGSTER_PG_PASSWORD": self.password,
                "DAGSTER_PG_DB": self.db}

    def connect(self):
        import psycopg2  # dagster-postgres' driver

        return psycopg2.connect(host=self.host, port=self.port, user=self.user,
                                password=self.password, dbname=self.db, connect_timeout=10)


def find_pg_bin() -> Path | None:
    """Where initdb and pg_ctl are: PATH, else Debian's versioned dir (not on PATH there)."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(os.path.realpath(on_path)).parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(Path(d).parent.name)
                  if Path(d).parent.name.isdigit() else 0, reverse=True)
    for d in dirs:
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def throwaway_cluster(bin_dir: Path) -> Iterator[PgServer]:
    """initdb + pg_ctl start in a temp dir; stopped (immediate) and removed on exit."""
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="tiktok-pg-"))
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError as e:
            raise RuntimeError("running as root and no `postgres` user to run the server as") from e
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = root / "data", root / "server.log"
    port = _free_port()

    def run(*cmd: str) -> None:
        subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=120)

    started = False
    try:
        # --no-sync and fsync=off: a test cluster's durability does not matter, its speed does.
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--no-sync", "--no-instructions")
        opts = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off")
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", opts, "start")
        started = True
        yield PgServer(host="127.0.0.1", port=port, user="postgres", password="", db="postgres")
    except subprocess.CalledProcessError as e:
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise RuntimeError(f"{e.cmd} failed: {e.stderr.decode(errors='replace')}\n{tail}") from e
    finally:
        if started:
            subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                            "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def fresh_database(server: PgServer) -> Iterator[PgServer]:
    """A database of its own for one test (tables start empty), dropped afterwards.

    Falls back to the server's database when the role may not create databases.
    """
    import psycopg2.errors

    name = f"dagster_test_{uuid.uuid4().hex[:12]}"
    conn = server.connect()
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    except psycopg2.errors.InsufficientPrivilege:  # no CREATEDB: share the given database
        conn.close()
        yield server
        return
    try:
        yield replace(server, db=name)
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()
