"""Test fixtures: a real PostGIS (the server scripts/dev starts, or GEOCLOUD_DATABASE_URL), one
throw-away database per test built from a migrated template, and the generated sample city.

Every database a test session creates is dropped when the session ends. The sample city is loaded
through the ETL once per run (``loaded_city``) and cloned for each module that serves it: the test
workers share that one load through PostgreSQL (an advisory lock) and a folder named by
GEOCLOUD_TEST_RUN, which the first process of a run (the controller under xdist) chooses.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

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
os.environ.setdefault("GEOCLOUD_TEST_RUN", uuid.uuid4().hex[:8])  # inherited by the xdist workers
LAZY = str(ROOT / "tests" / "lazy")  # rfc3987_syntax built on first use, in the tests and what they start
os.environ["PYTHONPATH"] = os.pathsep.join([LAZY, *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                                    if p and p != LAZY)])
sys.path.insert(0, LAZY)


def _run_folder(run: str) -> Path:
    """What this run's workers share on disk (the loaded city's source files and data directory)."""
    folder = Path(tempfile.gettempdir()) / f"geocloud-test-{run}"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    """The run's end (in the controller alone under xdist): drop what the workers shared."""
    if hasattr(session.config, "workerinput") or not SERVER_URL:
        return
    run = os.environ["GEOCLOUD_TEST_RUN"]
    _drop(f"geocloud_city_{run}")
    shutil.rmtree(_run_folder(run), ignore_errors=True)


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
    yield from _pointed_at(name, tmp_path / "data", monkeypatch)


def _pointed_at(name: str, data_dir: Path, monkeypatch):
    """The environment pointed at database ``name`` and ``data_dir`` while the test runs (yields the
    database's URL); the database dropped afterwards."""
    url = _url_for(name)
    monkeypatch.setenv("GEOCLOUD_DATABASE_URL", url)
    monkeypatch.setenv("GEOCLOUD_DATA_DIR", str(data_dir))
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
                      "topo-sheets", "inspection-sites", "road-works"]


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


def app_routes(routes, prefix: str = "") -> list[tuple[str, frozenset[str]]]:
    """Every (path, methods) an application routes, walking into mounted applications and included
    routers (a mounted application without routes, such as static files, as ``<mount>/{path}``)."""
    out = []
    for route in routes:
        if hasattr(route, "original_router"):  # FastAPI's include_router (a lazily flattened router)
            out += app_routes(route.original_router.routes, prefix + route.include_context.prefix)
        elif hasattr(route, "app") and hasattr(route, "path") and not hasattr(route, "endpoint"):  # a Mount
            inner = getattr(route.app, "routes", None)
            out += (app_routes(inner, prefix + route.path) if inner is not None
                    else [(prefix + route.path + "/{path}", frozenset({"GET", "HEAD"}))])
        elif getattr(route, "methods", None):
            out.append((prefix + route.path, frozenset(route.methods)))
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A real geocloud server (uvicorn, in a subprocess) over a database of its own."""

    def __init__(self, url: str, db_url: str, data_dir: Path, city: Path, proc, keys: dict):
        self.url, self.db_url, self.data_dir, self.city, self.proc, self.keys = url, db_url, data_dir, city, proc, keys

    def get(self, path: str, **kwargs):
        import httpx

        return httpx.get(self.url + path, timeout=60, **kwargs)


def load_city(db_url: str, data_dir: Path, city_dir: Path, pipelines=MANIFEST_PIPELINES) -> dict:
    """Generate the sample city into ``city_dir``, load it (or only ``pipelines``) through the real
    ETL into the (migrated) database ``db_url`` and make the access tests' keys (returned)."""
    from geocloud.etl import run_pipeline

    generate(city_dir)
    env = {"GEOCLOUD_DATABASE_URL": db_url, "GEOCLOUD_DATA_DIR": str(data_dir), "GEOCLOUD_OPERATOR": "tester"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    get_catalog.cache_clear()
    try:
        for pipeline in pipelines:
            run_pipeline(pipeline, source_of(city_dir, pipeline))
        return make_keys(db_url)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()
        get_catalog.cache_clear()


def start_server(db_url: str, data_dir: Path, env: dict | None = None, args=()) -> tuple[subprocess.Popen, str]:
    """``geocloud serve ARGS`` in a subprocess on a free port, once it answers /conformance: (process,
    URL). Its log (standard error and output) is data_dir/server.log."""
    import time

    import httpx

    env = {"GEOCLOUD_DATABASE_URL": db_url, "GEOCLOUD_DATA_DIR": str(data_dir), "GEOCLOUD_OPERATOR": "tester",
           "GEOCLOUD_RATE_LIMIT_ANONYMOUS": "1000000",  # tests hammer one address; test_access checks the limits
           **(env or {})}
    port = free_port()
    with (data_dir / "server.log").open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "geocloud", "serve", "--port", str(port), *args],
                                env={**os.environ, **env}, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600  # an import of everything took 3.5 min with 28 processes on two cores
    while True:
        try:
            if httpx.get(url + "/conformance", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start: {(data_dir / 'server.log').read_text()[-3000:]}")
        time.sleep(0.2)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def agency_database(template_db: str, keys: dict[str, tuple[str, str, str]]):
    """A fresh database from the template with agencies.yml synced and an API key for each name of
    ``keys`` (agency, principal, role): yields (database URL, {name: key}); dropped afterwards."""
    from geocloud.access import agencies
    from geocloud.access import keys as api_keys
    from geocloud.catalog import core_catalog

    name = f"geocloud_agc_{uuid.uuid4().hex[:8]}"
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template_db)))
    url = _url_for(name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            agencies.sync(conn, core_catalog(), "tester")
            made = {who: api_keys.create(conn, agency, principal, role, None, None)
                    for who, (agency, principal, role) in keys.items()}
        yield url, made
    finally:
        _drop(name)


@contextmanager
def agency_server(template_db: str, data_dir: Path, keys: dict[str, tuple[str, str, str]], env: dict | None = None,
                  args=()):
    """``agency_database`` served by ``geocloud serve ARGS``: yields (URL, database URL, {name: key})."""
    with agency_database(template_db, keys) as (url, made):
        proc, base = start_server(url, data_dir, env, args)
        try:
            yield base, url, made
        finally:
            stop_server(proc)


class LoadedCity(NamedTuple):
    database: str  # the template ``city_database`` clones
    data_dir: Path  # its data directory (COGs, reports)
    city: Path  # the generated source files it was loaded from (read them, never change them)
    keys: dict  # the access tests' keys (``make_keys``)


@pytest.fixture(scope="session")
def loaded_city(template_db) -> LoadedCity:
    """The sample city loaded through the real ETL once per test run, whatever the number of workers.
    The first worker to ask loads it while holding an advisory lock; the others wait for it, and every
    module that needs it works on a copy (``city_database``)."""
    run = os.environ["GEOCLOUD_TEST_RUN"]
    name, shared = f"geocloud_city_{run}", _run_folder(run)
    done = shared / "keys.json"  # written last: the city is loaded
    with _admin() as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (name,))
        try:
            if not done.exists():
                _drop(name)  # what a worker that failed half-way left
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                            sql.Identifier(template_db)))
                keys = load_city(_url_for(name), shared / "data", shared / "city")
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
                done.write_text(json.dumps(keys), encoding="utf-8")
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (name,))
    return LoadedCity(name, shared / "data", shared / "city", json.loads(done.read_text(encoding="utf-8")))


def city_database(loaded: LoadedCity, prefix: str, data_dir: Path) -> tuple[str, str]:
    """A private copy of the loaded sample city: a database cloned from it, and its data directory
    copied to ``data_dir``: (database name, URL). The caller drops the database."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                    sql.Identifier(loaded.database)))
    shutil.copytree(loaded.data_dir, data_dir, dirs_exist_ok=True)
    return name, _url_for(name)


@pytest.fixture
def city_loaded(loaded_city, monkeypatch, tmp_path):
    """``database`` with the sample city loaded through the ETL (a copy of ``loaded_city``, the data
    directory's too): its URL."""
    name, _ = city_database(loaded_city, "geocloud_test", tmp_path / "data")
    yield from _pointed_at(name, tmp_path / "data", monkeypatch)


@pytest.fixture(scope="module")
def served(loaded_city, tmp_path_factory):
    """The sample city loaded through the real ETL and served on a free port, over a database and a
    data directory of this module's own (copies of ``loaded_city``)."""
    data_dir = tmp_path_factory.mktemp("served-data")
    name, db_url = city_database(loaded_city, "geocloud_srv", data_dir)
    sso = SSO(data_dir)
    proc, url = start_server(db_url, data_dir, sso.env)
    served = Served(url, db_url, data_dir, loaded_city.city, proc, dict(loaded_city.keys))
    served.sso = sso
    yield served
    stop_server(proc)
    _drop(name)


def make_keys(db_url: str) -> dict:
    """The principals of the access tests, as API keys."""
    from datetime import datetime, timedelta, timezone

    from geocloud.access import agencies
    from geocloud.access import keys as api_keys

    with psycopg.connect(db_url, autocommit=True) as conn:
        agencies.sync(conn, get_catalog(), "tester")
        out = {
            "fire": api_keys.create(conn, "TCG-FIRE", "inspector-1", "inspector", None, None),
            "udb": api_keys.create(conn, "TCG-UDB", "planner-1", "analyst", None, None),
            "external": api_keys.create(conn, "MOI-LAND", "nlsc-1", "analyst", None, None),
            "expired": api_keys.create(conn, "TCG-FIRE", "old-1", "inspector", None,
                                       datetime.now(timezone.utc) - timedelta(days=1)),
            "revoked": api_keys.create(conn, "TCG-FIRE", "gone-1", "inspector", None, None),
            "scoped": api_keys.create(conn, "TCG-FIRE", "roads-only", "inspector", ["roads"], None),
        }
        api_keys.revoke(conn, api_keys.KEY.match(out["revoked"]).group(1))
    return out


class SSO:
    """A stand-in single sign-on: an RSA key pair made here, its JWKS file, and signed JWTs."""

    ISSUER = "https://sso.taichung.test"

    def __init__(self, folder: Path):
        import json

        import jwt
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid="test-1", use="sig", alg="RS256")
        path = folder / "jwks.json"
        path.write_text(json.dumps({"keys": [jwk]}), encoding="utf-8")
        self.env = {"GEOCLOUD_OIDC_ISSUER": self.ISSUER, "GEOCLOUD_OIDC_AUDIENCE": "geocloud",
                    "GEOCLOUD_OIDC_JWKS": str(path)}

    def token(self, agency="TCG-FIRE", roles=("inspector",), skew=0, forged=False) -> str:
        import time

        import jwt

        now = int(time.time()) + skew
        claims = {"iss": self.ISSUER, "aud": "geocloud", "sub": "u-42", "name": "稽查員王小明", "agency": agency,
                  "roles": list(roles), "iat": now, "exp": now + 600}
        return jwt.encode(claims, self.other if forged else self.key, algorithm="RS256", headers={"kid": "test-1"})


# -- browser checks the portal's tests share --------------------------------------------------------

AXE = Path(__file__).resolve().parents[1] / "node_modules" / "axe-core" / "axe.min.js"


def serious_violations(page) -> list[str]:
    """axe-core's serious and critical violations on the page as it stands (none is the accessibility
    mark's bar). axe is evaluated through the DevTools protocol: the page's Content-Security-Policy
    forbids injected scripts."""
    if not page.evaluate("!!window.axe"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    return page.evaluate("""axe.run(document).then(r => r.violations
        .filter(v => v.impact === 'serious' || v.impact === 'critical')
        .map(v => `${v.id}: ${v.help} (${v.nodes.map(n => n.target.join(' ')).join(', ')})`))""")


def tab_to(page, selector: str, presses: int = 120) -> None:
    """Press Tab until the focused element matches ``selector`` (the keyboard alone reaches it)."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement && document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} is not reachable with Tab")
