"""Shared helpers for the benchmarks: a throw-away database, timed child processes, a sample city."""

import json
import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from geocloud.db.pool import SESSION_SETTINGS as API_SESSION

ROOT = Path(__file__).resolve().parents[1]
# geocloud's own session settings (geocloud/db/pool.py), given to the peers for the "tuned" columns
SESSION_SETTINGS = {**API_SESSION, "statement_timeout": "60000"}
TUNED_PGOPTIONS = " ".join(f"-c {k}={v}" for k, v in SESSION_SETTINGS.items())  # libpq's PGOPTIONS


def server_url() -> str:
    url = os.environ.get("GEOCLOUD_DATABASE_URL")
    if not url:
        sys.exit("GEOCLOUD_DATABASE_URL is not set: run `scripts/dev setup` and export what it prints")
    return url


def url_for(dbname: str) -> str:
    """A postgresql:// URL (tipg accepts no other form) for ``dbname`` on the configured server."""
    from urllib.parse import quote

    info = psycopg.conninfo.conninfo_to_dict(server_url())
    auth = quote(info.get("user", ""), safe="") + (":" + quote(info["password"], safe="") if info.get("password") else "")
    return f"postgresql://{auth}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{quote(dbname)}"


@contextmanager
def scratch_database(prefix: str = "geocloud_bench"):
    name = f"{prefix}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(url_for("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield url_for(name)
    finally:
        with psycopg.connect(url_for("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """(wall seconds, peak resident memory in bytes, stdout) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{err.decode(errors='replace')[-3000:]}")
    return wall, usage.ru_maxrss * 1024, out.decode()


def sample_city(scale: float) -> Path:
    folder = ROOT / ".geocloud" / "bench" / f"city-{scale:g}"
    manifest = folder / "manifest.json"
    if not manifest.exists() or json.loads(manifest.read_text())["scale"] != scale:
        print(f"generating the sample city at scale {scale:g} into {folder} ...", flush=True)
        subprocess.run([sys.executable, "-m", "geocloud", "sample", "generate", str(folder), "--scale", str(scale)],
                       check=True, stdout=subprocess.DEVNULL)
    return folder


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Base(str):
    """A server's base URL that also knows the server's process id (for its CPU time)."""

    pid: int


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process so far (Linux /proc): what a server spent, whatever
    else the machine runs, so less noisy than wall time on a shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backend_pids(url: str) -> list[int]:
    """The PostGIS server processes serving ``url``'s database now (a server's pool, once warmed up),
    for their CPU time: PostGIS runs on this machine."""
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                           "AND pid <> pg_backend_pid()")]


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (nginx's workers, a server's children), from /proc: the children
    of each of a process's threads (a child belongs to the thread that started it)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            pass
    return found


def cpu_of(pids: list[int]) -> float:
    """CPU seconds of the processes still running among ``pids``."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except FileNotFoundError:
            pass
    return total


@contextmanager
def server(cmd: list[str], port: int, ready_path: str, env: dict | None = None, log_name: str = "server"):
    """Start a server process, wait until ``ready_path`` answers 200, stop it afterwards; yields its
    base URL (a ``Base``, whose ``pid`` is the process's)."""
    import http.client

    log = open(ROOT / ".geocloud" / "bench" / f"{log_name}.log", "wb")
    unlimited = {"GEOCLOUD_RATE_LIMIT_ANONYMOUS": "1000000000", "GEOCLOUD_RATE_LIMIT_KEY": "1000000000"}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **unlimited, **(env or {})})
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", ready_path)
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"{log_name} did not start; see {log.name}")
            time.sleep(0.3)
        base = Base(f"http://127.0.0.1:{port}")
        base.pid = proc.pid
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def geocloud_prefix(patches: str = "", python: str = sys.executable) -> list[str]:
    """The ``geocloud`` command, before its sub-command; ``patches`` (comma-separated, see
    bench/patched.py) changes a constant in-process for a what-if run, never geocloud's code on disk."""
    if not patches:
        return [python, "-m", "geocloud"]
    from patched import PATCHES

    if unknown := [name for name in patches.split(",") if name not in PATCHES]:
        sys.exit(f"unknown what-if {', '.join(unknown)}; use any of {', '.join(PATCHES)} (bench/patched.py)")
    return [python, str(ROOT / "bench" / "patched.py"), patches]


def geocloud_cmd(port: int, patches: str = "") -> list[str]:
    """``geocloud serve`` on ``port``, one process (``patches``: see ``geocloud_prefix``)."""
    return [*geocloud_prefix(patches), "serve", "--port", str(port)]


def median_pair(measure_a, measure_b, pairs: int = 3, key=lambda a, b: a["rps"] / b["rps"]) -> tuple:
    """Alternate ``measure_a()`` and ``measure_b()`` ``pairs`` times and keep the pair whose ratio is
    the median: a noisy neighbour then slows both sides of a pair instead of one server's whole run."""
    found = sorted(((measure_a(), measure_b()) for _ in range(pairs)), key=lambda ab: key(*ab))
    return found[len(found) // 2]


@contextmanager
def nginx(server_block: str, port: int, workers: int = 1):
    """nginx (``apt-get install nginx``) on 127.0.0.1:``port`` with one ``server`` block, its files in a
    temporary directory; ``workers`` processes, like the server it is compared with."""
    import shutil
    import tempfile

    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(exe).exists():
        sys.exit("nginx is not installed: apt-get install nginx (see bench/README.md)")
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as tmp:
        for d in ("logs", "body", "fastcgi"):
            (Path(tmp) / d).mkdir()
        (Path(tmp) / "nginx.conf").write_text(f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes {workers};
pid {tmp}/nginx.pid;
error_log {tmp}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  fastcgi_temp_path {tmp}/fastcgi;
  proxy_temp_path {tmp}/body;
  uwsgi_temp_path {tmp}/body;
  scgi_temp_path {tmp}/body;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    {server_block}
  }}
}}
""")
        proc = subprocess.Popen([exe, "-p", tmp, "-c", f"{tmp}/nginx.conf", "-g", "daemon off;"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_for_port(port, proc, "nginx")
            base = Base(f"http://127.0.0.1:{port}")
            base.pid = proc.pid
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _wait_for_port(port: int, proc, name: str) -> None:
    import socket

    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"{name} did not start on port {port}")
            time.sleep(0.1)


def _drive(base: str, batches: list[list[str]], before_each, headers: dict | None, concurrency: int) -> dict:
    """GET every path of each batch from ``concurrency`` keep-alive clients (kept across batches),
    ``before_each()`` before a batch; only the batches are timed. Requests per second and latency
    percentiles in milliseconds."""
    import http.client
    import queue
    import urllib.parse
    from concurrent.futures import ThreadPoolExecutor

    host = urllib.parse.urlsplit(base)
    conns = [http.client.HTTPConnection(host.hostname, host.port, timeout=120) for _ in range(concurrency)]
    latencies: list[float] = []
    errors: list[str] = []

    def worker(conn, todo):
        while True:
            try:
                path = todo.get_nowait()
            except queue.Empty:
                return
            t0 = time.perf_counter()
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
            body = resp.read()
            latencies.append(time.perf_counter() - t0)
            if resp.status not in (200, 204):  # 204: a tile with nothing in it
                errors.append(f"{resp.status} {path}: {body[:200]!r}")

    busy = 0.0
    with ThreadPoolExecutor(concurrency) as pool:
        for batch in batches:
            before_each()
            todo: queue.Queue = queue.Queue()
            for path in batch:
                todo.put(path)
            t0 = time.perf_counter()
            for f in [pool.submit(worker, conn, todo) for conn in conns]:
                f.result()
            busy += time.perf_counter() - t0
    for conn in conns:
        conn.close()
    if errors:
        sys.exit(f"errors from {base}: {errors[:3]}")
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {"rps": len(latencies) / busy, "p50": pick(0.50), "p95": pick(0.95)}


def load(base: str, paths: list[str], requests: int, concurrency: int = 4, headers: dict | None = None) -> dict:
    """Send ``requests`` GETs (cycling through ``paths``) from ``concurrency`` keep-alive clients."""
    return _drive(base, [[paths[i % len(paths)] for i in range(requests)]], lambda: None, headers, concurrency)


def rounds(base: str, paths: list[str], before_each, minimum: int = 300, headers: dict | None = None,
           concurrency: int = 4) -> dict:
    """Request every path once per round, ``before_each()`` first (e.g. empty a cache), for at least
    ``minimum`` requests in all: a pass over a handful of low-zoom tiles is otherwise too short to
    time. Clients and connections last across rounds and only the rounds are timed, so a round of
    two tiles is not mostly thread and connection set-up."""
    count = max(1, -(-minimum // len(paths)))
    return _drive(base, [paths] * count, before_each, headers, concurrency)


WRK_SCRIPT = """
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %.6f %.3f %.3f\\n", summary.requests, summary.errors.status,
    summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(95) / 1000))
end
"""


def sustained(base: str, paths: list[str], seconds: int = 5, concurrency: int = 4, headers: dict | None = None) -> dict:
    """Requests cycling through ``paths`` for ``seconds`` from ``concurrency`` keep-alive connections.
    With wrk installed (``apt-get install wrk``) the load comes from C, so a fast server is not capped
    by the load generator; without it, from ``load`` (Python, about 3,000 requests a second at most)."""
    import shutil
    import tempfile

    if shutil.which("wrk") is None:
        return load(base, paths, 3 * len(paths), concurrency, headers)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "paths.txt").write_text("\n".join(paths))
        (Path(tmp) / "cycle.lua").write_text(WRK_SCRIPT)
        cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "-s", str(Path(tmp) / "cycle.lua")]
        for k, v in (headers or {}).items():
            cmd += ["-H", f"{k}: {v}"]
        out = subprocess.run(cmd + [base], capture_output=True, text=True, check=True,
                             env={**os.environ, "BENCH_PATHS": str(Path(tmp) / "paths.txt")}).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    _, count, bad, wall, p50, p95 = line.split()
    if int(bad):
        sys.exit(f"{bad} non-2xx answers from {base} under load")
    return {"rps": int(count) / float(wall), "p50": float(p50), "p95": float(p95)}


def page_all(base: str, first_path: str, headers: dict | None = None) -> tuple[float, int]:
    """Follow next links from ``first_path`` to the end; return (seconds, features)."""
    import http.client
    import urllib.parse

    host = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=300)
    path, count, t0 = first_path, 0, time.perf_counter()
    while path:
        try:
            conn.request("GET", path, headers={"Accept": "application/geo+json", **(headers or {})})
            resp = conn.getresponse()
        except http.client.RemoteDisconnected:  # the server closed the idle keep-alive connection as we sent
            conn.close()
            conn.request("GET", path, headers={"Accept": "application/geo+json", **(headers or {})})
            resp = conn.getresponse()
        body = json.loads(resp.read())
        if resp.status != 200:
            sys.exit(f"{resp.status} from {base}{path}: {body}")
        count += len(body["features"])
        nxt = [link["href"] for link in body.get("links", []) if link.get("rel") == "next"]
        path = None
        if nxt and body["features"]:
            parts = urllib.parse.urlsplit(nxt[0])
            path = parts.path + ("?" + parts.query if parts.query else "")
    return time.perf_counter() - t0, count


def load_city(url: str, city: Path, pipelines: list[str], patches: str = "") -> None:
    """Load ``pipelines`` of the sample city through geocloud's ETL (``patches``: see ``geocloud_prefix``)."""
    env = {"GEOCLOUD_DATABASE_URL": url, "GEOCLOUD_DATA_DIR": str(ROOT / ".geocloud" / "bench" / "data")}
    for name in pipelines:
        rel = json.loads((city / "manifest.json").read_text())["pipelines"][name]
        subprocess.run([*geocloud_prefix(patches), "etl", "run", name, str(city / rel)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **env})


def internal_project(layer: str) -> Path:
    """A copy of the project whose ``layer`` is internal (for measuring the cost of authorization)."""
    import shutil

    import yaml

    folder = ROOT / ".geocloud" / "bench" / "project-internal"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in ("layers", "etl", "styles"):
        shutil.copytree(ROOT / name, folder / name)
    for name in ("agencies.yml", "pygeoapi-config.yml"):
        shutil.copy(ROOT / name, folder / name)
    path = folder / "layers" / f"{layer}.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["access"] = {"level": "internal"}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return folder


def agency_key(url: str) -> str:
    """A key of a city agency on the benchmark database."""
    from geocloud.access import agencies, keys
    from geocloud.catalog import load_catalog

    with psycopg.connect(url, autocommit=True) as conn:
        agencies.sync(conn, load_catalog(ROOT / "layers", ROOT / "agencies.yml"), "bench")
        return keys.create(conn, "TCG-UDB", "bench", "analyst", None, None)
