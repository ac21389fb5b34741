"""Database connections with errors an operator can act on."""

from contextlib import contextmanager
from typing import Iterator

import psycopg

from geocloud.config import get_settings
from geocloud.errors import DatabaseError


def database_url(url: str | None = None) -> str:
    url = url or get_settings().database_url
    if not url:
        raise DatabaseError(
            "GEOCLOUD_DATABASE_URL is not set",
            fix="run `scripts/dev setup` for a local PostGIS, or export "
                "GEOCLOUD_DATABASE_URL=postgresql://user:password@host:5432/dbname",
        )
    return url


def redacted(url: str) -> str:
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(unparseable URL)"
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def connection_options(timeout: float = 10) -> dict:
    """libpq options for every connection: give up connecting after ``timeout`` seconds, and send TCP
    keepalives so that a server that vanished (a network cut, a host down) is noticed in about 20 s
    instead of the kernel's two hours."""
    return {"connect_timeout": max(2, round(timeout)), "application_name": "geocloud", "keepalives": 1,
            "keepalives_idle": 10, "keepalives_interval": 3, "keepalives_count": 3}


def connect(url: str | None = None, *, timeout: float = 10, **kwargs) -> psycopg.Connection:
    """Open a connection, or raise DatabaseError saying why it failed and what to do."""
    url = database_url(url)
    try:
        psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise DatabaseError(
            f"GEOCLOUD_DATABASE_URL is not a valid PostgreSQL URL ({str(exc).strip()})",
            fix="use the form postgresql://user:password@host:5432/dbname",
        ) from None
    try:
        return psycopg.connect(url, **{**connection_options(timeout), **kwargs})
    except psycopg.OperationalError as exc:
        reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or "no answer"
        raise DatabaseError(
            f"cannot connect to the database at {redacted(url)}: {reason}",
            fix="check that PostgreSQL is running and GEOCLOUD_DATABASE_URL's host, port, user, "
                "password and database name (`scripts/dev setup` starts a local one)",
        ) from None


@contextmanager
def transaction(url: str | None = None) -> Iterator[psycopg.Connection]:
    """A connection whose work commits on success and rolls back on any error."""
    with connect(url) as conn:
        with conn.transaction():
            yield conn
