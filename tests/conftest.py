"""Test fixtures: a real PostGIS (the server scripts/dev starts, or GEOCLOUD_DATABASE_URL), one
throw-away database per test built from a migrated template, and the generated sample city.

Every database a test session creates is dropped when the session ends.
"""

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from geocloud import db
from geocloud.catalog import get_catalog
from geocloud.config import get_settings
from geocloud.sample import generate

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "real"
SERVER_URL = os.environ.get("GEOCLOUD_DATABASE_URL")


def _url_for(dbname: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(SERVER_URL)
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**info)


def _admin() -> psycopg.Connection:
    return psycopg.connect(_url_for("postgres"), autocommit=True)


def _drop(name: str) -> None:
    with _admin() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def template_db():
    if not SERVER_URL:
        pytest.fail("GEOCLOUD_DATABASE_URL is not set: run the tests with `scripts/dev test`")
    name = f"geocloud_tpl_{uuid.uuid4().hex[:8]}"
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    db.upgrade(_url_for(name))
    yield name
    _drop(name)


@pytest.fixture
def database(template_db, monkeypatch, tmp_path):
    """A fresh, migrated database of this test's own; the environment points at it."""
    name = f"geocloud_test_{uuid.uuid4().hex[:8]}"
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template_db)))
    url = _url_for(name)
    monkeypatch.setenv("GEOCLOUD_DATABASE_URL", url)
    monkeypatch.setenv("GEOCLOUD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GEOCLOUD_OPERATOR", "tester")
    monkeypatch.delenv("GEOCLOUD_PROJECT_DIR", raising=False)
    get_settings.cache_clear()
    get_catalog.cache_clear()
    yield url
    get_settings.cache_clear()
    get_catalog.cache_clear()
    _drop(name)


@pytest.fixture(scope="session")
def city(tmp_path_factory) -> Path:
    """The default sample city, generated once per test worker."""
    folder = tmp_path_factory.mktemp("city")
    generate(folder)
    return folder


@pytest.fixture
def city_copy(city, tmp_path) -> Path:
    """A private copy of the sample city that a test may edit."""
    dst = tmp_path / "city"
    shutil.copytree(city, dst)
    return dst


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A private copy of the project's layers/, etl/ and agencies.yml that a test may edit."""
    dst = tmp_path / "project"
    dst.mkdir()
    for name in ("layers", "etl"):
        shutil.copytree(ROOT / name, dst / name)
    shutil.copy(ROOT / "agencies.yml", dst / "agencies.yml")
    monkeypatch.setenv("GEOCLOUD_PROJECT_DIR", str(dst))
    get_settings.cache_clear()
    get_catalog.cache_clear()
    yield dst
    get_settings.cache_clear()
    get_catalog.cache_clear()


def geocloud_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real ``geocloud`` command in a subprocess with the test's environment."""
    return subprocess.run([sys.executable, "-m", "geocloud", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200", **(env or {})}, timeout=timeout)


def needs_shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path


MANIFEST_PIPELINES = ["districts", "roads", "buildings", "addresses", "zoning", "landmarks", "topo", "satellite",
                      "topo-sheets"]


def source_of(city: Path, pipeline: str) -> Path:
    import json

    return city / json.loads((city / "manifest.json").read_text(encoding="utf-8"))["pipelines"][pipeline]


def live_state(url: str, layer: str) -> tuple:
    """(live version, feature count, checksum of every row) of a vector layer, or None."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT version FROM geocloud.layer_versions WHERE layer = %s AND state = 'live'",
                           (layer,)).fetchone()
        if row is None:
            return None
        count, digest = conn.execute(sql.SQL(
            "SELECT count(*), md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))) FROM live.{} t").format(
            sql.Identifier(layer))).fetchone()
    return row[0], count, digest
