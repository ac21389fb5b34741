"""Migrations on a real PostGIS, and clear errors for a bad or unreachable database."""

import psycopg
import pytest

from geocloud import db
from geocloud.db.migrate import _check_postgis, available
from geocloud.errors import DatabaseError

from conftest import geocloud_cli


def test_upgrade_is_idempotent_and_recorded(database):
    assert db.upgrade() == []  # the template already holds every migration
    states = db.status()
    assert [s.migration.version for s in states] == [m.version for m in available()]
    assert all(s.applied_at is not None for s in states)
    with psycopg.connect(database) as conn:
        schemas = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}
        assert {"live", "staging", "history", "geocloud"} <= schemas
        assert conn.execute("SELECT postgis_version()").fetchone()[0]


def test_upgrade_applies_to_an_empty_database(database):
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("DROP SCHEMA geocloud CASCADE")
    applied = db.upgrade()
    assert [m.version for m in applied] == [m.version for m in available()]


def test_cli_upgrade_and_status(database):
    up = geocloud_cli("db", "upgrade")
    assert up.returncode == 0 and "up to date" in up.stdout
    st = geocloud_cli("db", "status")
    assert "0001" in st.stdout and "schemas" in st.stdout and "pending" not in st.stdout


def test_changed_migration_is_refused(database):
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("UPDATE geocloud.schema_migrations SET checksum = 'x' WHERE version = 1")
    with pytest.raises(DatabaseError, match="was changed after it was applied"):
        db.upgrade()


def test_missing_postgis_is_explained(database):
    with psycopg.connect(database) as conn:
        _check_postgis(conn)  # present here
        with pytest.raises(DatabaseError, match="apt-get install postgresql-15-postgis-3"):
            _check_postgis(conn, extension="postgis_that_is_not_installed")


@pytest.mark.parametrize("url, exit_code, text", [
    ("not a url", 4, "not a valid PostgreSQL URL"),
    ("postgresql://nobody@127.0.0.1:1/none", 4, "cannot connect to the database at 127.0.0.1:1/none"),
])
def test_bad_database_urls_exit_4_with_a_message(url, exit_code, text):
    out = geocloud_cli("db", "status", env={"GEOCLOUD_DATABASE_URL": url})
    assert out.returncode == exit_code
    assert text in out.stderr and "fix:" in out.stderr and "Traceback" not in out.stderr


def test_unset_database_url_says_how_to_fix(monkeypatch):
    out = geocloud_cli("db", "upgrade", env={"GEOCLOUD_DATABASE_URL": ""})
    assert out.returncode == 4 and "GEOCLOUD_DATABASE_URL is not set" in out.stderr


def test_api_sessions_never_run_a_generic_plan(database):
    """psycopg prepares a statement after its fifth run; PostgreSQL's generic plan for it cannot see
    the parameters (a city-wide bbox planned as a few matches took 220 ms instead of 2 ms), so the
    API's sessions ask for custom plans every time."""
    from geocloud.db.pool import get_pool

    with get_pool().connection() as conn:
        for _ in range(12):
            conn.execute("SELECT count(*) FROM pg_class WHERE relpages > %s", [0]).fetchone()
        plans = conn.execute("SELECT sum(generic_plans), sum(custom_plans) FROM pg_prepared_statements").fetchone()
    assert plans[1] >= 1, "psycopg prepared the statement (the case this guards)"
    assert plans[0] == 0
