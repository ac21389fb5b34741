"""Ordered SQL migrations, recorded in ``geocloud.schema_migrations``.

Each file in ``migrations/`` (``NNNN_name.sql``) runs once, in its own transaction, under an
advisory lock so that two workers upgrading at once do not race.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime
from importlib import resources

import psycopg

from geocloud.db.connect import connect
from geocloud.errors import DatabaseError

_LOCK_KEY = 0x6765_6F63  # "geoc": serializes concurrent upgrades


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class MigrationState:
    migration: Migration
    applied_at: datetime | None


def available() -> list[Migration]:
    folder = resources.files("geocloud.db") / "migrations"
    out = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            out.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text(encoding="utf-8")))
    return out


_BOOKKEEPING = """
CREATE SCHEMA IF NOT EXISTS geocloud;
CREATE TABLE IF NOT EXISTS geocloud.schema_migrations (
    version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now())
"""


def _check_postgis(conn: psycopg.Connection, extension: str = "postgis") -> None:
    row = conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = %s", (extension,)).fetchone()
    if row is None:
        raise DatabaseError(
            f"the {extension} extension is not installed on the database server",
            fix="install it on the server (Debian: apt-get install postgresql-15-postgis-3), "
                "then run `geocloud db upgrade` again",
        )


def _applied(conn: psycopg.Connection) -> dict[int, tuple[str, datetime]]:
    exists = conn.execute("SELECT to_regclass('geocloud.schema_migrations')").fetchone()[0]
    if exists is None:
        return {}
    rows = conn.execute("SELECT version, checksum, applied_at FROM geocloud.schema_migrations").fetchall()
    return {v: (c, at) for v, c, at in rows}


def status(url: str | None = None) -> list[MigrationState]:
    with connect(url) as conn:
        done = _applied(conn)
    return [MigrationState(m, done.get(m.version, (None, None))[1]) for m in available()]


def upgrade(url: str | None = None) -> list[Migration]:
    """Apply the migrations not yet applied; return them. Safe to run any number of times."""
    applied_now = []
    with connect(url) as conn:
        _check_postgis(conn)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            conn.execute(_BOOKKEEPING)
        for migration in available():
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                done = _applied(conn)
                if migration.version in done:
                    if done[migration.version][0] != migration.checksum:
                        raise DatabaseError(
                            f"migration {migration.version:04d}_{migration.name} was changed after it "
                            "was applied",
                            fix="never edit an applied migration; add a new one instead",
                        )
                    continue
                try:
                    conn.execute(migration.sql)
                except psycopg.errors.InsufficientPrivilege as exc:
                    raise DatabaseError(
                        f"migration {migration.version:04d} needs more privileges: {exc}",
                        fix="run `geocloud db upgrade` as the database owner (CREATE EXTENSION postgis "
                            "needs a superuser once)",
                    ) from None
                conn.execute(
                    "INSERT INTO geocloud.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
                applied_now.append(migration)
    return applied_now
