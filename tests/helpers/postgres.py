"""A throwaway PostgreSQL cluster for the database tests: made in a temporary folder, on a free 127.0.0.1 port,
with a random password, and stopped (data thrown away) afterwards. ``postgres`` is the pytest fixture (import it
into a test module); :func:`running_postgres` is the same outside pytest (tests/fixtures/make_release_db.py)."""
from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers.support import require


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = found[-1] if found else shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


class Postgres:
    def __init__(self, port: int, password: str):
        self.port, self.password = port, password

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://quiz:{self.password}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres"):
        """A psycopg connection in autocommit mode."""
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user="quiz", password=self.password,
                               dbname=database, autocommit=True)

    def new_database(self) -> str:
        """A fresh empty database: each test starts from nothing, as a first use does."""
        name = f"quiz_{secrets.token_hex(4)}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def running_postgres(skip=require):
    """A started cluster (a :class:`Postgres`); ``skip(condition, reason)`` is called when one cannot be made."""
    bin_dir = _postgres_bin()
    skip(bin_dir is not None, "PostgreSQL server not installed (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        skip(False, "psycopg not installed (pip install -r requirements.txt)")
    folder = Path(tempfile.mkdtemp(prefix="pneumo-pg-"))
    run_as = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as an ordinary user
        user = next((u for u in ("postgres", "nobody") if _user_exists(u)), None)
        skip(user is not None and shutil.which("runuser"), "no unprivileged user (postgres or nobody) and runuser")
        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        run_as = ["runuser", "-u", user, "--"]
    password = secrets.token_urlsafe(12)
    (folder / "pw").write_text(password)
    if run_as:
        os.chown(folder / "pw", entry.pw_uid, entry.pw_gid)
    port = _free_port()
    data = folder / "data"

    def pg(*args, check=True):
        return subprocess.run([*run_as, *map(str, args)], cwd=folder, capture_output=True, text=True, check=check,
                              timeout=120)

    pg(bin_dir / "initdb", "-D", data, "-U", "quiz", f"--pwfile={folder / 'pw'}", "-A", "scram-sha-256",
       "-E", "UTF8", "--no-sync")
    started = pg(bin_dir / "pg_ctl", "-D", data, "-l", folder / "log", "-w", "-t", "60", "-o",
                 f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off", "start", check=False)
    if started.returncode != 0:
        log = (folder / "log").read_text() if (folder / "log").exists() else ""
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {started.stderr} {log[-2000:]}")
    try:
        yield Postgres(port, password)
    finally:
        pg(bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop", check=False)  # data is thrown away
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres():
    try:
        with running_postgres() as server:
            yield server
    except RuntimeError as exc:
        pytest.fail(str(exc))
