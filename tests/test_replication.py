"""Scale-out drills on PostgreSQL streaming replication, with real processes on loopback ports: a
primary, a streaming replica made with pg_basebackup, and two `geocloud serve` nodes reading from
the replica (GEOCLOUD_DATABASE_READ_URL) and writing to whichever of the two is the primary (a
multi-host GEOCLOUD_DATABASE_URL with target_session_attrs=read-write), sharing one tile cache
folder, under a steady read load from a client thread.

1. A publish on the primary (a real ETL run): both nodes converge within the README's bound (the
   replica's lag plus state.REFRESH), and no response on the way mixes versions: every items page's
   numberMatched (the version's feature count) is the number of rows it returned, and one ETag
   always comes with the same body.
2. The replica is cut off from its primary and falls behind: past GEOCLOUD_REPLICA_MAX_LAG the
   nodes read from the primary and their /health/ready says so; caught up, they read from the
   replica again.
3. The primary stops: reads go on from the replica without one failed request; writes answer 503
   with Retry-After (and a key cannot be created: one clear message, as the CLI prints it).
4. The replica is promoted: writes (a token issued, a key created, an ETL run) work again without
   restarting either node. With that last server stopped too, the nodes are live but not ready.
"""

import csv
import hashlib
import json
import multiprocessing
import os
import shutil
import struct
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import morecantile
import psycopg
import pytest
from conftest import free_port, geocloud_cli, load_city, source_of, start_server, stop_server
from psycopg import sql
from test_outage import HALL, Cluster, _pg_bin

from geocloud import db
from geocloud.access import keys as api_keys
from geocloud.errors import DatabaseError
from geocloud.serve.state import REFRESH

pytestmark = pytest.mark.xdist_group("replication")

MAX_LAG = 2.0   # GEOCLOUD_REPLICA_MAX_LAG of the nodes here
SLACK = 1.5     # a loaded 2-core machine: the client's own round trips, a thread scheduled late
ITEMS = "/collections/landmarks/items?limit=200&f=json"
TILE = morecantile.tms.get("WebMercatorQuad").tile(*HALL, 14)
TILE_PATH = f"/collections/landmarks/tiles/WebMercatorQuad/{TILE.z}/{TILE.y}/{TILE.x}"


class Standby(Cluster):
    """A streaming replica of ``primary``: pg_basebackup -R, then started on a port of its own."""

    def __init__(self, primary: Cluster):
        self.dir = Path(tempfile.mkdtemp(prefix="geocloud-replica-"))
        self.data = self.dir / "pg"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        self._run(_pg_bin("pg_basebackup"), "-D", self.data, "-h", "127.0.0.1", "-p", primary.port, "-U", "postgres",
                  "-R", "-X", "stream", "-c", "fast")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"port = {self.port}\nunix_socket_directories = '{self.data}'\n")
        self.start()

    def promote(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", self.data, "-w", "-t", "60", "promote")


@dataclass
class Answer:
    at: float
    node: str
    kind: str
    status: int | None   # None: no answer at all
    etag: str | None
    body: str            # digest
    matched: int | None = None
    returned: int | None = None


class Load(threading.Thread):
    """Items pages and a tile from every node in turn, as fast as they answer, all recorded."""

    def __init__(self, nodes: list[str]):
        super().__init__(daemon=True)
        self.nodes, self.answers, self.done = nodes, [], threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.done.is_set():
                for node in self.nodes:
                    for kind, path in (("items", ITEMS), ("tile", TILE_PATH)):
                        self.answers.append(self._get(client, node, kind, path))

    @staticmethod
    def _get(client: httpx.Client, node: str, kind: str, path: str) -> Answer:
        try:
            r = client.get(node + path)
        except httpx.HTTPError as exc:
            return Answer(time.time(), node, kind, None, None, repr(exc))
        body = r.content
        if kind == "items" and r.status_code == 200:
            page = r.json()
            body = json.dumps([page["features"], page["numberMatched"]]).encode()  # not its timeStamp
        answer = Answer(time.time(), node, kind, r.status_code, r.headers.get("etag"), hashlib.sha256(body).hexdigest())
        if kind == "items" and r.status_code == 200:
            answer.matched, answer.returned = page["numberMatched"], len(page["features"])
        return answer

    def since(self, start: float) -> list[Answer]:
        return [a for a in list(self.answers) if a.at >= start]


def _failed(answers: list[Answer]) -> list[Answer]:
    return [a for a in answers if a.status != 200]


def _mixed(answers: list[Answer]) -> list:
    """Answers whose parts belong to different versions: a page counting other rows than it has, or
    an ETag seen with two different bodies."""
    bodies: dict[tuple, set] = {}
    for a in answers:
        if a.status == 200:
            bodies.setdefault((a.kind, a.etag), set()).add(a.body)
    return ([a for a in answers if a.kind == "items" and a.matched != a.returned]
            + [k for k, v in bodies.items() if len(v) > 1])


def _converged(load: Load, node: str, count: int, since: float, timeout: float = 60) -> float:
    """When ``node`` first answered ``count`` landmarks after ``since`` (failing if it ever answered
    another count afterwards: a node never goes back)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pages = [a for a in load.since(since) if a.node == node and a.kind == "items" and a.status == 200]
        first = next((i for i, a in enumerate(pages) if a.matched == count), None)
        if first is not None and len(pages) > first + 4:
            assert {a.matched for a in pages[first:]} == {count}, "a node went back to an older version"
            return pages[first].at
        time.sleep(0.1)
    raise AssertionError(f"{node} did not reach {count} landmarks in {timeout} s")


def _poll(check, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached in {timeout} s")


def _ready(node: str) -> dict:
    return httpx.get(node + "/health/ready", timeout=30).json()


def _ready_when(node: str, wanted, what: str) -> dict:
    """``node``'s /health/ready answer, once ``wanted(answer)`` holds."""
    return _poll(lambda: (h if wanted(h := _ready(node)) else None), 30, what)


def _landmarks(city: Path, extra: int, folder: Path) -> Path:
    """The city's landmarks plus ``extra`` new ones next to city hall (in the drill's tile)."""
    src = source_of(city, "landmarks")
    with src.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    x, y = float(rows[1][4]), float(rows[1][5])
    rows += [[f"LM9{i:04d}", f"演練地標{i}", "公園", "臺中市西屯區臺灣大道三段99號", f"{x + 40 * (i + 1):.1f}",
              f"{y + 40:.1f}"] for i in range(extra)]
    path = folder / f"landmarks-{extra}.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def _count(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT feature_count FROM geocloud.layer_versions WHERE layer = 'landmarks' "
                            "AND state = 'live'").fetchone()[0]


def _committed(url: str) -> float:
    """When the newest publish or rollback was committed (the primary's clock: this machine's)."""
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT extract(epoch FROM max(at))::float8 FROM geocloud.layer_events").fetchone()[0]


def _stream_from(standby: Standby, conninfo: str) -> str:
    """Point the standby's WAL receiver at ``conninfo`` ('' cuts it off); return the former one."""
    with psycopg.connect(standby.url(), autocommit=True) as conn:
        former = conn.execute("SHOW primary_conninfo").fetchone()[0]
        conn.execute(sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(sql.Literal(conninfo)))
        conn.execute("SELECT pg_reload_conf()")
    return former


def _create_key(url: str) -> str:
    """A new API key, made through ``url`` (libpq picks the server that takes writes)."""
    with db.connect(url, autocommit=True) as conn:
        return api_keys.create(conn, "TCG-FIRE", "drill", "inspector", None, None)


def _issue_token(node: str, key: str) -> httpx.Response:
    return httpx.post(node + "/auth/token", headers={"X-API-Key": key}, timeout=30)


@pytest.fixture(scope="module")
def replicated(tmp_path_factory):
    primary = Cluster()
    standby = None
    try:
        db.upgrade(primary.url())
        data = tmp_path_factory.mktemp("replication-data")
        city = tmp_path_factory.mktemp("replication-city")
        keys = load_city(primary.url(), data, city, pipelines=["districts", "landmarks"])
        standby = Standby(primary)
        yield primary, standby, data, city, keys
    finally:
        if standby is not None:
            standby.remove()
        primary.remove()


def test_replicas_serve_reads_converge_and_survive_failover(replicated, tmp_path):
    primary, standby, data, city, keys = replicated
    hosts = f"127.0.0.1:{primary.port},127.0.0.1:{standby.port}"
    write_url = f"postgresql://geocloud:geocloud@{hosts}/geocloud?target_session_attrs=read-write"
    read_url = f"postgresql://geocloud:geocloud@{hosts}/geocloud?target_session_attrs=prefer-standby"
    cache = tmp_path / "shared-tile-cache"
    env = {"GEOCLOUD_DATABASE_READ_URL": read_url, "GEOCLOUD_REPLICA_MAX_LAG": str(MAX_LAG),
           "GEOCLOUD_TILE_CACHE_DIR": str(cache)}
    cli_env = {"GEOCLOUD_DATABASE_URL": write_url, "GEOCLOUD_DATA_DIR": str(data), "GEOCLOUD_OPERATOR": "drill"}
    procs, nodes = [], []
    load = Load(nodes)

    def start(name: str) -> None:
        (tmp_path / name).mkdir()
        proc, node = start_server(write_url, tmp_path / name, env)
        procs.append(proc)
        nodes.append(node)
    try:
        with ThreadPoolExecutor(2) as pool:  # both nodes start at once
            list(pool.map(start, ("a", "b")))
        for node in nodes:
            health = _ready_when(node, lambda h: h["reads_from"] == "replica", "reading from the replica")
            assert health["status"] == "ready" and health["databases"]["primary"]["reachable"]
            assert health["databases"]["replica"]["reachable"] and set(health["catalog"]) == {"version", "registry_version"}
            assert "geocloud:geocloud" not in json.dumps(health) and str(standby.port) not in json.dumps(health)
            assert httpx.get(node + "/health/live", timeout=30).json() == {"status": "live"}
        before = _count(primary.url())
        load.start()
        _poll(lambda: len(load.answers) > 20, 60, "the first answers")

        # 1. a publish on the primary: both nodes converge, no mixed answer on the way
        started = time.time()
        run = geocloud_cli("etl", "run", "landmarks", _landmarks(city, 3, tmp_path), env=cli_env)
        assert run.returncode == 0, run.stderr
        committed = _committed(primary.url())
        convergence = [_converged(load, node, before + 3, started) - committed for node in nodes]
        assert max(convergence) <= MAX_LAG + REFRESH + SLACK, convergence
        assert not _failed(load.since(0)) and not _mixed(load.since(0))

        # 2. the replica is cut off from its primary and falls behind: the nodes read from the
        # primary, and say so (the replica has replayed all it received: only the primary knows)
        conninfo = _stream_from(standby, "")
        new_key = _create_key(write_url)
        for node in nodes:
            behind = _ready_when(node, lambda h: h["reads_from"] == "primary", "lag noticed")
            assert behind["databases"]["replica"]["too_far_behind"] and behind["status"] == "ready"
            assert behind["databases"]["replica"]["lag_seconds"] > MAX_LAG
            # the key exists on the primary only: it is read there
            assert httpx.get(node + ITEMS, headers={"X-API-Key": new_key}, timeout=30).status_code == 200
        _stream_from(standby, conninfo)
        for node in nodes:
            _ready_when(node, lambda h: h["reads_from"] == "replica", "back on the replica")

        # 3. the primary stops: reads go on, writes answer 503 with Retry-After
        stopped = time.time()
        primary.stop()
        for node in nodes:
            refused = _issue_token(node, keys["fire"])
            assert refused.status_code == 503 and int(refused.headers["retry-after"]) > 0, refused.text
            health = _ready_when(node, lambda h: h["writes"] == "unavailable", "no writes")
            assert health["status"] == "ready" and not health["databases"]["primary"]["reachable"]
        with pytest.raises(DatabaseError, match="cannot connect"):  # what the CLI says, as one message
            _create_key(write_url)
        _poll(lambda: len(load.since(stopped)) > 20, 60, "reads during the outage")
        during = load.since(stopped)
        assert len(during) > 10 and not _failed(during), _failed(during)[:5]

        # 4. the replica is promoted: writes work again, neither node restarted
        standby.promote()
        promoted = time.monotonic()
        writable = []
        for node in nodes:
            _poll(lambda: _issue_token(node, keys["fire"]).status_code == 200, 60, "writes after promotion")
            writable.append(time.monotonic() - promoted)
        assert _ready(nodes[0])["databases"]["primary"]["reachable"]
        assert httpx.get(nodes[1] + ITEMS, headers={"X-API-Key": _create_key(write_url)}, timeout=30).status_code == 200
        started = time.time()
        run = geocloud_cli("etl", "run", "landmarks", _landmarks(city, 5, tmp_path), env=cli_env)
        assert run.returncode == 0, run.stderr
        committed = _committed(standby.url())
        convergence += [_converged(load, node, before + 5, started) - committed for node in nodes]
        assert max(convergence) <= MAX_LAG + REFRESH + SLACK, convergence
        load.done.set()
        load.join(timeout=60)
        answers = load.since(0)
        assert not _failed(answers), _failed(answers)[:5]
        assert not _mixed(answers), _mixed(answers)[:5]
        assert all(p.poll() is None for p in procs)

        # no database left to read from: not ready (the process still lives)
        standby.stop()
        for node in nodes:
            r = _poll(lambda: (r if (r := httpx.get(node + "/health/ready", timeout=30)).status_code == 503 else None),
                      30, "not ready")
            assert r.json()["status"] == "not ready" and int(r.headers["retry-after"]) > 0
            assert httpx.get(node + "/health/live", timeout=30).status_code == 200
        print(f"\ndrill: {len(answers)} requests, {len(_failed(answers))} failed, {len(_mixed(answers))} mixed; "
              f"convergence {', '.join(f'{c:.2f}' for c in convergence)} s (bound {MAX_LAG + REFRESH:g} s); "
              f"writes {', '.join(f'{w:.2f}' for w in writable)} s after promotion")
    finally:
        load.done.set()
        for proc in procs:
            stop_server(proc)


def _tile_writer(path: str, writer: int, rounds: int) -> None:
    from geocloud.serve.tiles import tilecache

    for i in range(rounds):
        size = 1000 + (writer * 7919 + i * 104729) % 100_000
        tilecache.write(path, 1, struct.pack("<I", size) + bytes([writer * 16 + i % 16]) * size)


def test_a_shared_tile_cache_takes_concurrent_writers_without_torn_tiles(tmp_path, monkeypatch):
    """Several processes (nodes) write the same tiles into GEOCLOUD_TILE_CACHE_DIR while another
    reads them: every hit is one writer's whole tile. A tile cut short is a miss, and so is a tile
    rendered after an event the reading node has not seen yet (its replica is behind)."""
    from geocloud.config import get_settings
    from geocloud.serve.state import Snapshot
    from geocloud.serve.tiles import tilecache

    shared = tmp_path / "shared"
    monkeypatch.setenv("GEOCLOUD_TILE_CACHE_DIR", str(shared))
    get_settings.cache_clear()
    path = tilecache.tile_path("vector", "landmarks", "WebMercatorQuad", 14, 1, "2.mvt")
    assert path.startswith(str(shared))
    seen = Snapshot(5, {})
    writers = [multiprocessing.get_context("fork").Process(target=_tile_writer, args=(path, w, 60))
               for w in range(4)]
    for w in writers:
        w.start()
    hits = 0
    while any(w.is_alive() for w in writers) or not hits:
        cached = tilecache.read(path, seen, ["landmarks"], lambda: (0, 0, 1, 1))
        if cached is not None:
            data, token = cached
            (size,) = struct.unpack_from("<I", data)
            assert token == 1 and len(data) == 4 + size and data[4:] == data[4:5] * size, "a torn tile"
            hits += 1
    assert all(w.join(60) is None and w.exitcode == 0 for w in writers)
    assert hits > 10 and os.listdir(os.path.dirname(path)) == ["2.mvt"]  # no temporary file left behind

    with open(path, "r+b") as fh:
        fh.truncate(os.path.getsize(path) - 1)  # a writer that died mid-way on storage without atomic renames
    assert tilecache.read(path, seen, ["landmarks"], lambda: (0, 0, 1, 1)) is None
    tilecache.write(path, 7, b"rendered by a node that has seen event 7")
    assert tilecache.read(path, seen, ["landmarks"], lambda: (0, 0, 1, 1)) is None
    assert tilecache.read(path, Snapshot(7, {}), ["landmarks"], lambda: (0, 0, 1, 1))[1] == 7
    get_settings.cache_clear()
