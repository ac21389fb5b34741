"""Scale-out drills on PostgreSQL streaming replication, with real processes on loopback ports: a
primary, a streaming replica made with pg_basebackup, and two `geocloud serve` nodes reading from
the replica (GEOCLOUD_DATABASE_READ_URL) and writing to whichever of the two is the primary (a
multi-host GEOCLOUD_DATABASE_URL with target_session_attrs=read-write), sharing one tile cache
folder, under a steady read load from a client thread.

1. A publish on the primary (a real ETL run): both nodes converge within the README's bound (the
   replica's lag plus state.REFRESH), and no response on the way mixes versions: every items page's
   numberMatched (the version's feature count) is the number of rows it returned, and one ETag
   always comes with the same body.
2. The replica falls behind (its replay paused): past GEOCLOUD_REPLICA_MAX_LAG the nodes read from
   the primary and their /health/ready says so; caught up, they read from the replica again.
3. The primary stops: reads go on from the replica without one failed request; writes answer 503
   with Retry-After (the CLI fails with a message, no traceback).
4. The replica is promoted: writes (a token issued, a key created, an ETL run) work again without
   restarting either node.
"""

import csv
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import morecantile
import psycopg
import pytest

from geocloud import db
from geocloud.serve.state import REFRESH

from conftest import free_port, geocloud_cli, load_city, source_of, start_server, stop_server
from test_outage import HALL, Cluster, _pg_bin

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
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        proc, node = start_server(write_url, tmp_path / name, env)
        procs.append(proc)
        nodes.append(node)
    load = Load(nodes)
    try:
        for node in nodes:
            health = _ready_when(node, lambda h: h["reads_from"] == "replica", "reading from the replica")
            assert health["status"] == "ready" and health["databases"]["primary"]["reachable"]
            assert health["databases"]["replica"]["reachable"] and health["catalog"]["live_layers"] == 2
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

        # 2. the replica falls behind: the nodes read from the primary, and say so
        with psycopg.connect(standby.url(), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")
        fresh = geocloud_cli("keys", "create", "--agency", "TCG-FIRE", "--role", "inspector", env=cli_env)
        assert fresh.returncode == 0, fresh.stderr
        new_key = fresh.stdout.strip().splitlines()[-1]
        for node in nodes:
            behind = _ready_when(node, lambda h: h["reads_from"] == "primary", "lag noticed")
            assert behind["databases"]["replica"]["too_far_behind"] and behind["status"] == "ready"
            assert behind["databases"]["replica"]["lag_seconds"] > MAX_LAG
            # the key exists on the primary only: it is read there
            assert httpx.get(node + ITEMS, headers={"X-API-Key": new_key}, timeout=30).status_code == 200
        with psycopg.connect(standby.url(), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")
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
        cli = geocloud_cli("keys", "create", "--agency", "TCG-FIRE", "--role", "inspector", env=cli_env)
        assert cli.returncode != 0 and "cannot connect" in cli.stderr and "Traceback" not in cli.stderr
        time.sleep(1)  # reads keep coming meanwhile
        during = load.since(stopped)
        assert len(during) > 10 and not _failed(during), _failed(during)[:5]

        # 4. the replica is promoted: writes work again, neither node restarted
        standby.promote()
        promoted = time.monotonic()
        writable = []
        for node in nodes:
            _poll(lambda: _issue_token(node, keys["fire"]).status_code == 200, 60, "writes after promotion")
            writable.append(time.monotonic() - promoted)
        again = geocloud_cli("keys", "create", "--agency", "TCG-FIRE", "--role", "inspector", env=cli_env)
        assert again.returncode == 0, again.stderr
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
        print(f"\ndrill: {len(answers)} requests, {len(_failed(answers))} failed, {len(_mixed(answers))} mixed; "
              f"convergence {', '.join(f'{c:.2f}' for c in convergence)} s (bound {MAX_LAG + REFRESH:g} s); "
              f"writes {', '.join(f'{w:.2f}' for w in writable)} s after promotion")
    finally:
        load.done.set()
        for proc in procs:
            stop_server(proc)
