"""pg_dump and pg_restore from the PostgreSQL installation that fits the server, run without the
password on their command line (it goes in PGPASSWORD, which other users cannot read from ``ps``).

pg_dump must be of the server's major version or newer (an older one refuses to dump, or misses
what it does not know); Debian installs each version's tools under /usr/lib/postgresql/N/bin.
"""

import os
import re
import shutil
import subprocess
from glob import glob
from pathlib import Path

import psycopg

from geocloud.errors import DatabaseError

SEARCH = "/usr/lib/postgresql/*/bin"


def tool_major(path: Path) -> int | None:
    """The major version of a PostgreSQL client program, from ``--version`` (None if it says none)."""
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True).stdout
    found = re.search(r"\(PostgreSQL\) (\d+)", out)
    return int(found.group(1)) if found else None


def find_tool(name: str, server_major: int) -> Path:
    """The installed ``name`` (pg_dump, pg_restore) of the lowest major version not older than the
    server's, the same version when it is installed; a version's own folder before the one on PATH."""
    candidates = [Path(p) / name for p in sorted(glob(SEARCH))] + ([Path(shutil.which(name))] if shutil.which(name) else [])
    found = [(major, order, path) for order, path in enumerate(candidates)
             if path.is_file() and os.access(path, os.X_OK) and (major := tool_major(path)) is not None]
    fit = sorted(item for item in found if item[0] >= server_major)
    if not fit:
        have = ", ".join(f"{path} ({major})" for major, _, path in found) or "none"
        raise DatabaseError(
            f"the database server runs PostgreSQL {server_major}, but no {name} of version {server_major} or "
            f"newer is installed (found: {have})",
            fix=f"install the client of the server's version (Debian: apt-get install postgresql-client-{server_major})")
    return fit[0][2]


def server_major(conn: psycopg.Connection) -> int:
    return conn.info.server_version // 10000


def libpq_target(url: str) -> tuple[str, dict]:
    """(connection string without the password, environment holding it) for a libpq program."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    password = info.pop("password", None)
    env = {**os.environ, "PGAPPNAME": "geocloud-backup"}
    if password is not None:
        env["PGPASSWORD"] = password
    return psycopg.conninfo.make_conninfo(**info), env


def run(tool: Path, args: list[str], url: str | None = None, what: str = "") -> str:
    """Run a PostgreSQL program (never prompting for a password); its stdout, or DatabaseError with
    its own words."""
    env = dict(os.environ)
    if url is not None:
        conninfo, env = libpq_target(url)
        args = [*args, "--no-password", f"--dbname={conninfo}"]
    done = subprocess.run([str(tool), *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise DatabaseError(f"{tool.name} failed{what}: {done.stderr.strip() or f'exit code {done.returncode}'}",
                            fix="see PostgreSQL's message above")
    return done.stdout
