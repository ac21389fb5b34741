"""Database outages, against a PostgreSQL cluster of this module's own (the shared one on port 54329
must never be restarted): the sample city is loaded into it and served by `geocloud serve`, then
the cluster is stopped and started again (`pg_ctl stop -m fast` / `start`) under a steady load.

What must hold: routes that need no database keep answering; routes that need it answer 503 with
Retry-After within GEOCLOUD_DB_TIMEOUT (a request in flight when the server dies included), never
500 and never a hang; the server answers again within 2 s of the database coming back; a statement
running past GEOCLOUD_DB_STATEMENT_TIMEOUT is stopped and answered 503."""

import glob
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from conftest import free_port, load_city, start_server, stop_server

from geocloud import db
from geocloud.serve.state import REFRESH
from geocloud.serve.tiles.tms import SERVED

pytestmark = pytest.mark.xdist_group("outage")  # one cluster of its own, shared by this module's tests

HALL = (120.647296502, 24.1619892378)
DB_TIMEOUT = 5.0   # GEOCLOUD_DB_TIMEOUT's default, which the servers here keep
OUTAGE = 28.0      # longer than a key is cached (keys.CACHE_SECONDS), and than psycopg_pool's backoff steps


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return found[-1] if found else shutil.which(name) or pytest.fail(f"{name} not found (apt-get install postgis)")


class Cluster:
    """A small PostgreSQL cluster in a temporary folder, owned by the postgres user when run as root
    (the server refuses to run as root), on a free port of 127.0.0.1."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="geocloud-outage-"))
        self.data = self.dir / "pg"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        self._run(_pg_bin("initdb"), "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--locale=C.UTF-8")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.data}'\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                       "max_prepared_transactions = 2\n")  # for hold_locks
        self.start()
        with psycopg.connect(self.url("postgres", "postgres"), autocommit=True) as conn:
            conn.execute("CREATE ROLE geocloud LOGIN SUPERUSER PASSWORD 'geocloud'")
            conn.execute("CREATE DATABASE geocloud OWNER geocloud")

    def _run(self, *args) -> None:
        cmd = [str(a) for a in args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)

    def url(self, user="geocloud", dbname="geocloud") -> str:
        return f"postgresql://{user}:{user}@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", self.data, "-l", self.dir / "server.log", "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.dir, ignore_errors=True)


HELD = "geocloud-outage-test"


def hold_locks(url: str, tables: str) -> None:
    """Lock ``tables`` in a prepared transaction, which outlives its session and the cluster's stop.
    A session's lock is let go when fast shutdown ends that session, and a statement waiting for it
    could then finish before its own session was ended (a request "in flight" answered 200, in two
    clean-clone runs in a row). ``let_go`` ends it once the cluster is back."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE")
        conn.execute(f"PREPARE TRANSACTION '{HELD}'")


def let_go(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ROLLBACK PREPARED '{HELD}'")


@pytest.fixture(scope="module")
def city_on_own_cluster(tmp_path_factory):
    """(cluster, database URL, data dir, keys): the sample city loaded into a cluster of this module's own."""
    cluster = Cluster()
    try:
        url = cluster.url()
        db.upgrade(url)
        data_dir = tmp_path_factory.mktemp("outage-data")
        keys = load_city(url, data_dir, tmp_path_factory.mktemp("outage-city"))
        yield cluster, url, data_dir, keys
    finally:
        cluster.remove()


def test_a_statement_past_the_time_limit_is_answered_503(city_on_own_cluster, tmp_path):
    _, url, _, _ = city_on_own_cluster
    proc, base = start_server(url, tmp_path, {"GEOCLOUD_DB_STATEMENT_TIMEOUT": "1"})
    try:
        assert httpx.get(f"{base}/collections/buildings/items?limit=1", timeout=10).status_code == 200
        with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
            conn.execute("LOCK TABLE live.buildings IN ACCESS EXCLUSIVE MODE")  # a reader now waits for it
            started = time.monotonic()
            r = httpx.get(f"{base}/collections/buildings/items?limit=1&building_id=x", timeout=10)
            took = time.monotonic() - started
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "5" and "longer than 1 s" in r.json()["description"]
        assert took < 1 + 2
        assert httpx.get(f"{base}/collections/buildings/items?limit=1", timeout=10).status_code == 200
    finally:
        stop_server(proc)


def test_a_node_starts_while_its_primary_is_down_if_its_replica_answers(city_on_own_cluster, tmp_path):
    """A node restarted during a failover serves reads from the replica (here: the cluster, named
    as the read URL) although the write URL names a server that is not running."""
    _, url, _, _ = city_on_own_cluster
    dead = f"postgresql://geocloud:geocloud@127.0.0.1:{free_port()}/geocloud"
    proc, base = start_server(dead, tmp_path, {"GEOCLOUD_DATABASE_READ_URL": url})
    try:
        r = httpx.get(f"{base}/collections/buildings/items?limit=1", timeout=10)
        assert r.status_code == 200 and len(r.json()["features"]) == 1
    finally:
        stop_server(proc)


def _timed(url: str) -> tuple[int, float]:
    started = time.monotonic()
    return httpx.get(url, timeout=30).status_code, time.monotonic() - started


def test_rate_limits_hold_during_an_outage_from_local_counts(city_on_own_cluster, tmp_path):
    cluster, url, _, _ = city_on_own_cluster
    proc, base = start_server(url, tmp_path, {"GEOCLOUD_RATE_LIMIT_ANONYMOUS": "20"})
    try:
        if time.time() % 60 > 50:
            time.sleep(60.5 - time.time() % 60)  # the burst below counts in one minute
        assert httpx.get(base + "/conformance", timeout=10).status_code == 200
        cluster.stop()
        try:
            answers = [httpx.get(base + "/conformance", timeout=10) for _ in range(25)]
        finally:
            cluster.start()
    finally:
        stop_server(proc)
    statuses = [r.status_code for r in answers]
    allowed = statuses.index(429) if 429 in statuses else len(statuses)
    assert 0 < allowed < 20 and set(statuses[allowed:]) == {429}, statuses  # start-up probes counted too
    assert all(1 <= int(r.headers["retry-after"]) <= 60 for r in answers[allowed:])


class Load(threading.Thread):
    """A steady, bounded load: one request every PERIOD seconds, round the given (kind, path, headers)."""

    PERIOD = 0.03

    def __init__(self, base: str, targets: list):
        super().__init__(daemon=True)
        self.base, self.targets, self.results, self.stopped = base, targets, [], threading.Event()

    def run(self):
        with httpx.Client(base_url=self.base, timeout=30) as client:
            i = 0
            while not self.stopped.is_set():
                kind, path, headers = self.targets[i % len(self.targets)]
                started = time.monotonic()
                try:
                    r = client.get(path, headers=headers)
                    outcome = (r.status_code, r.headers.get("retry-after"))
                except httpx.HTTPError as exc:
                    outcome = (type(exc).__name__, None)
                self.results.append((kind, path, started, time.monotonic() - started, *outcome))
                i += 1
                time.sleep(max(0.0, self.PERIOD - (time.monotonic() - started)))


def test_a_database_restart_under_load(city_on_own_cluster):
    cluster, url, data_dir, keys = city_on_own_cluster
    proc, base = start_server(url, data_dir)
    try:
        web = SERVED["WebMercatorQuad"]
        vector, raster, restricted = web.tile(*HALL, 14), web.tile(*HALL, 13), web.tile(*HALL, 13)
        fire = {"Authorization": f"Bearer {keys['fire']}"}
        unseen = {"X-API-Key": keys["udb"]}  # never verified by this server before the outage
        no_db = [
            ("conformance", "/conformance", {}),
            ("vector tile", f"/collections/roads/tiles/WebMercatorQuad/{vector.z}/{vector.y}/{vector.x}", {}),
            ("raster tile", f"/rasters/satellite/tiles/WebMercatorQuad/{raster.z}/{raster.x}/{raster.y}.png", {}),
            ("restricted tile, known key",
             f"/collections/inspection_sites/tiles/WebMercatorQuad/{restricted.z}/{restricted.y}/{restricted.x}", fire),
            ("map page", "/map/", {}),
            ("static asset", "/map/static/viewer.js", {}),
        ]
        needs_db = [
            ("items", "/collections/buildings/items?limit=2", {}),
            ("items, second page", "/collections/roads/items?limit=1&offset=3", {}),
            ("unseen key", "/collections/roads/items?limit=1", unseen),
        ]
        for _, path, headers in no_db * 2:  # fill the tile caches; verify the key
            assert httpx.get(base + path, headers=headers, timeout=30).status_code == 200, path
        warmed = time.monotonic()

        # a request in flight when the server goes: it waits for a lock the test holds
        hold_locks(url, "live.zoning")
        in_flight: list = []
        waiting = threading.Thread(target=lambda: in_flight.append(
            httpx.get(base + "/collections/zoning/items?limit=1&zone_code=x", timeout=30)), daemon=True)

        load = Load(base, no_db + needs_db)
        load.start()
        time.sleep(2)
        waiting.start()
        time.sleep(0.5)
        stopped = time.monotonic()
        cluster.stop()
        stopped_at = time.monotonic()
        time.sleep(max(OUTAGE - (time.monotonic() - stopped), warmed + 30 - time.monotonic()))
        restarting = time.monotonic()  # the database may answer before pg_ctl's start returns
        cluster.start()
        back = time.monotonic()
        time.sleep(4)
        load.stopped.set()
        load.join(timeout=60)
        waiting.join(timeout=30)
        let_go(url)
        time.sleep(REFRESH + 0.5)  # idle, with a live state to re-read: no request in flight will notice the stop
        cluster.stop()
        idle = {path: _timed(base + path) for path in ("/conformance", "/collections/roads/items?limit=1")}
        cluster.start()
        outage_reads = sum(1 for r in load.results if r[0] == "restricted tile, known key" and stopped_at < r[2] < back)
        deadline = time.monotonic() + 10
        while True:  # tile reads of the restricted layer during the outage reach the audit trail once it is back
            with psycopg.connect(url) as conn:
                audited = conn.execute(
                    "SELECT coalesce(sum((detail->>'tiles')::int), 0) FROM geocloud.audit WHERE layer = "
                    "'inspection_sites' AND surface = 'tiles' AND at > now() - interval '5 minutes'").fetchone()[0]
            if audited >= outage_reads or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        stop_server(proc)

    results = load.results
    failed = [r for r in results if r[4] not in (200, 503)]
    first_503 = min((r[2] + r[3] for r in results if r[4] == 503), default=None)
    during = [r for r in results if stopped_at + DB_TIMEOUT + 1 < r[2] < restarting]
    db_after = [r for r in results if r[0] in {k for k, _, _ in needs_db} and r[2] > back]
    recovered = next((r[2] + r[3] for i, r in enumerate(db_after) if all(x[4] == 200 for x in db_after[i:])), None)
    slowest_503 = max((r[3] for r in results if r[4] == 503), default=0)
    print(f"\noutage: {len(results)} requests, {len(failed)} failed (not 200/503), "
          f"first 503 {first_503 - stopped:.2f} s after the stop began (slowest 503 {slowest_503:.2f} s), "
          f"database down for {back - stopped:.1f} s, "
          f"recovered {recovered - back:.2f} s after it was back" if first_503 and recovered else
          f"\noutage: {len(results)} requests, {len(failed)} failed, first 503 {first_503}, recovered {recovered}")

    assert not failed, failed[:10]
    assert in_flight and in_flight[0].status_code == 503 and in_flight[0].headers["retry-after"] == "5", \
        in_flight and in_flight[0].text
    for kind, path, started, took, status, retry in results:
        if kind in {k for k, _, _ in no_db}:
            assert status == 200 and took < 1.0, (kind, path, status, took)
        else:
            assert took < DB_TIMEOUT + 1.0, (kind, path, status, took)
            assert status == 200 or retry == "5", (kind, path, status, retry)
    assert during and all(r[4] == 503 for r in during if r[0] in {k for k, _, _ in needs_db}), [r for r in during if r[0] in {k for k, _, _ in needs_db} and r[4] != 503]
    assert first_503 is not None and first_503 - stopped < DB_TIMEOUT + 1.0
    assert recovered is not None and recovered - back < 2.0

    assert outage_reads > 10 and audited >= outage_reads
    # an outage that begins while the server is idle is noticed by the first request that needs a connection
    assert idle["/conformance"][0] == 200 and idle["/conformance"][1] < 1.0, idle
    assert idle["/collections/roads/items?limit=1"][0] == 503 and idle["/collections/roads/items?limit=1"][1] < 1.0, idle


def test_manage_and_request_routes_answer_503_through_an_outage(city_on_own_cluster, tmp_path):
    """The /manage routes and the portal's request pages take their connections from the pool: a
    request in flight when the database goes and every one while it is down are answered 503 with
    Retry-After at once (not 500, not the form again, not after a timeout), nothing is half written,
    and they work again once it is back."""
    from geocloud.access import sessions

    cluster, url, _, keys = city_on_own_cluster
    with psycopg.connect(url, autocommit=True) as conn:
        secret = sessions.start(conn, "u-outage", "outage-tester", "TCG-FIRE", ["inspector"], None)
        csrf = sessions.find(conn, secret).csrf
    key, cookie = {"Authorization": f"Bearer {keys['fire']}"}, {"Cookie": f"geocloud_session={secret}"}
    asked = {"layer": "no_such_layer", "reason": "outage test"}
    routes = [("GET", "/manage/layers", key, {}), ("POST", "/manage/requests", key, {"json": asked}),
              ("GET", "/requests", cookie, {}),
              ("POST", "/requests", cookie, {"data": {"csrf": csrf, "layer": "other_layer", "reason": "outage test"}})]

    def send(method, path, headers, body) -> tuple[int, str | None, float, str]:
        started = time.monotonic()
        r = httpx.request(method, base + path, headers=headers, timeout=30, **body)
        return r.status_code, r.headers.get("retry-after"), time.monotonic() - started, r.text[:200]

    proc, base = start_server(url, tmp_path)
    try:
        for method, path, headers, _ in routes[::2]:  # the key verified and cached, the pages answering
            assert httpx.request(method, base + path, headers=headers, timeout=30).status_code == 200, path
        hold_locks(url, "geocloud.etl_runs, geocloud.access_requests")
        in_flight: dict = {}
        threads = [threading.Thread(target=lambda r=r: in_flight.update({r[:2]: send(*r)}), daemon=True)
                   for r in routes]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        with psycopg.connect(url, autocommit=True) as watch:  # a session of its own: each check sees the waiters anew
            while watch.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'").fetchone()[0] \
                    < len(routes):
                assert time.monotonic() < deadline, ("not every request waits for the lock", in_flight)
                time.sleep(0.1)
            time.sleep(0.1)
        cluster.stop()
        try:
            for t in threads:
                t.join(timeout=30)
            down = {r[:2]: send(*r) for r in routes}
        finally:
            cluster.start()
            let_go(url)
        back = time.monotonic()
        while any(httpx.request(m, base + p, headers=h, timeout=30).status_code != 200 for m, p, h, _ in routes[::2]):
            assert time.monotonic() < back + 10, "the routes did not answer again once the database was back"
            time.sleep(0.2)
        with psycopg.connect(url) as conn:  # what was in flight was rolled back
            assert conn.execute("SELECT count(*) FROM geocloud.access_requests").fetchone()[0] == 0
        after = {r[:2]: send(*r)[0] for r in routes[1::2]}
    finally:
        stop_server(proc)
    for answers, limit in ((in_flight, DB_TIMEOUT + 1.0), (down, 1.0)):
        assert set(answers) == {r[:2] for r in routes}, answers
        for route, (status, retry, took, text) in answers.items():
            assert status == 503 and retry == "5" and took < limit, (route, status, retry, took, text)
    assert after == {("POST", "/manage/requests"): 201, ("POST", "/requests"): 303}, after
