"""Operating several nodes (issue #16): /metrics for Prometheus (restricted unless configured, one
scrape for every worker), JSON log lines naming the request id the answer carried, and client
mistakes that are not logged as server errors (issue #14). Real servers, their real logs."""

import json
import os
import re
import socket
import subprocess
import sys
import time

import httpx
import psycopg
import pytest
from conftest import ROOT, geocloud_cli, start_server, stop_server
from prometheus_client.parser import text_string_to_metric_families

from geocloud.serve.tiles.tms import SERVED

HALL = (120.647296502, 24.1619892378)
UNKNOWN_ITEM = "/collections/buildings/items/NO-SUCH-BUILDING"
SURFACES = {"landing", "openapi", "features", "items", "tiles", "downloads", "coverages", "rasters", "styles",
            "wmts", "geocode", "metadata", "viewer", "auth", "health", "metrics", "other"}


def start(served, folder, env: dict, *args: str) -> tuple[subprocess.Popen, str, object]:
    """`geocloud serve ARGS` over the served city's database, with its own data directory and log
    (folder/server.log: standard output too, where pygeoapi once wrote)."""
    env = {"GEOCLOUD_METRICS": "off", "GEOCLOUD_LOG_FORMAT": "text", "GEOCLOUD_ACCESS_LOG": "false", **env}
    proc, url = start_server(served.db_url, folder, env, args)
    return proc, url, folder / "server.log"


@pytest.fixture(scope="module")
def watched(served, tmp_path_factory):
    """Two workers, JSON logs with the access log, /metrics for 127.0.0.1, 127.0.0.1 a trusted proxy."""
    proc, url, log = start(served, tmp_path_factory.mktemp("watched"),
                           {"GEOCLOUD_METRICS": "127.0.0.1", "GEOCLOUD_TRUSTED_PROXIES": "127.0.0.1"},
                           "--workers", "2", "--log-format", "json", "--access-log")
    yield url, log
    stop_server(proc)


@pytest.fixture(scope="module")
def keyed(served, tmp_path_factory):
    """Text logs with the access log; /metrics for keys with the role 'metrics' and a far network."""
    proc, url, log = start(served, tmp_path_factory.mktemp("keyed"),
                           {"GEOCLOUD_METRICS": "key,192.0.2.0/24", "GEOCLOUD_ACCESS_LOG": "true"})
    yield url, log
    stop_server(proc)


def scrape(url: str, **kwargs) -> dict:
    """{(name, sorted labels): value} of every sample /metrics gives."""
    r = httpx.get(url + "/metrics", timeout=30, **kwargs)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


def log_lines(log, rid: str, wanted: int = 1) -> list[str]:
    """The lines of the server log naming ``rid`` (waits for the access line: written after the answer)."""
    for _ in range(50):
        lines = [line for line in log.read_text(encoding="utf-8").splitlines() if rid in line]
        if len(lines) >= wanted:
            return lines
        time.sleep(0.1)
    return lines


def test_metrics_are_off_by_default_and_cover_every_worker_when_on(served, watched):
    assert served.get("/metrics").status_code == 404  # GEOCLOUD_METRICS unset: no such route
    url, _ = watched
    tile = SERVED["WebMercatorQuad"].tile(*HALL, 15)
    tile_path = f"/collections/buildings/tiles/WebMercatorQuad/{tile.z}/{tile.y}/{tile.x}"
    for _ in range(3):
        assert httpx.get(url + tile_path, timeout=30).status_code in (200, 204)
    for _ in range(12):  # one connection each: the kernel spreads them over both workers
        assert httpx.get(url + "/collections/roads/items?limit=1", timeout=30).status_code == 200
    assert httpx.get(url + UNKNOWN_ITEM, timeout=30).status_code == 404
    samples = scrape(url)
    assert value(samples, "geocloud_http_requests_total", surface="items", code="200", method="GET") == 12
    assert value(samples, "geocloud_http_requests_total", surface="items", code="404") == 1
    assert value(samples, "geocloud_http_request_duration_seconds_count", surface="items", status="2xx") == 12
    assert value(samples, "geocloud_http_requests_total", surface="tiles") == 3
    assert value(samples, "geocloud_tile_cache_total", result="miss") == 1
    assert value(samples, "geocloud_tile_cache_total", result="hit") == 2
    # a bounded label set: never a path or an id
    assert {v for (_, ls) in samples for k, v in ls if k == "surface"} <= SURFACES
    assert not [v for (_, ls) in samples for _, v in ls if "NO-SUCH" in v or "collections" in v]
    assert value(samples, "geocloud_db_pool_connections") >= 1
    assert ("geocloud_db_pool_waiting_requests" in {n for n, _ in samples})
    # the ETL runs that loaded the city, read from PostGIS
    assert value(samples, "geocloud_database_up") == 1
    assert value(samples, "geocloud_etl_run_seconds_count", pipeline="buildings", status="published") == 1
    assert value(samples, "geocloud_etl_run_seconds_sum", pipeline="buildings") > 0
    assert value(samples, "geocloud_etl_last_success_timestamp_seconds", pipeline="roads") > time.time() - 86400


def test_metrics_are_refused_to_others_and_open_to_a_metrics_key(served, keyed):
    from geocloud.access import keys as api_keys

    url, _ = keyed
    assert httpx.get(url + "/metrics", timeout=30).status_code == 401  # anonymous, not in 192.0.2.0/24
    fire = {"X-API-Key": served.keys["fire"]}
    assert httpx.get(url + "/metrics", headers=fire, timeout=30).status_code == 403  # an inspector's key
    with psycopg.connect(served.db_url, autocommit=True) as conn:
        key = api_keys.create(conn, "TCG-INFO", "prometheus", "metrics", None, None)
    samples = scrape(url, headers={"Authorization": f"Bearer {key}"})
    assert value(samples, "geocloud_http_requests_total", surface="metrics", code="403") == 1


def test_json_log_lines_carry_the_request_id_of_the_answer(watched):
    url, log = watched
    r = httpx.get(url + "/collections/roads/items?limit=2&api_key=not-a-real-key-123", timeout=30)
    rid = r.headers["x-request-id"]
    assert len(rid) == 32 and r.status_code == 401
    ours = httpx.get(url + "/conformance", headers={"X-Request-Id": "lb-7f3a.2"}, timeout=30)
    assert ours.headers["x-request-id"] == "lb-7f3a.2"  # from a trusted proxy: kept
    bad = httpx.get(url + "/conformance", headers={"X-Request-Id": "no spaces\tor tabs"}, timeout=30)
    assert len(bad.headers["x-request-id"]) == 32
    lines = log_lines(log, rid)
    assert lines
    for line in log.read_text(encoding="utf-8").splitlines():
        json.loads(line)  # every line of the log is one JSON object
    access = [json.loads(line) for line in lines if json.loads(line)["logger"] == "geocloud.access"]
    assert len(access) == 1, lines
    entry = access[0]
    assert entry["request_id"] == rid and entry["method"] == "GET" and entry["status"] == 401
    assert entry["path"] == "/collections/roads/items?limit=2&api_key=REDACTED" and entry["level"] == "INFO"
    assert isinstance(entry["duration_ms"], float) and entry["time"].startswith("20")
    assert "not-a-real-key-123" not in log.read_text(encoding="utf-8")
    assert any(json.loads(line)["request_id"] == "lb-7f3a.2" for line in log_lines(log, "lb-7f3a.2"))


def test_an_incoming_request_id_is_ignored_from_untrusted_clients(served):
    r = served.get("/conformance", headers={"X-Request-Id": "chosen-by-the-client"})
    assert r.headers["x-request-id"] != "chosen-by-the-client" and len(r.headers["x-request-id"]) == 32


def test_an_answer_leaves_the_server_in_one_write(served, tmp_path):
    """serve/protocol.py: uvicorn wrote an answer's head and its body in two system calls (two TCP
    segments); geocloud serve writes them together, keep-alive and HEAD as before (strace counts)."""
    log = tmp_path / "writes"
    trace = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=write,sendto,sendmsg,writev", "-s", "65536",
                              "-o", str(log), "-p", str(served.proc.pid)])
    try:
        time.sleep(1.5)  # attached
        with httpx.Client(base_url=served.url, timeout=30) as client:  # one keep-alive connection
            answers = [client.get("/conformance"), client.head("/conformance"), client.get("/conformance")]
    finally:
        trace.terminate()
        trace.wait(timeout=30)
    assert [r.status_code for r in answers] == [200, 200, 200] and answers[1].content == b""
    heads = [line for line in log.read_text().splitlines() if "HTTP/1.1 200" in line]
    assert len(heads) == 3, heads
    assert all("conformsTo" in line for line in (heads[0], heads[2])), heads  # the body in the head's write
    assert sum("conformsTo" in line for line in log.read_text().splitlines()) == 2  # and in no other


def test_a_client_that_half_closes_after_its_request_gets_the_answer(served):
    """A client may shut its side down once the request is sent (nc -N, HTTP/1.0 tools): the server
    sees the end of input in the turn it writes the answer, and what it held must still go out."""
    host, port = served.url.removeprefix("http://").split(":")
    for _ in range(5):
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(b"GET /conformance HTTP/1.1\r\nHost: geocloud\r\n\r\n")
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and b"conformsTo" in answer, answer[:200]


def test_an_unknown_item_is_one_info_line_without_a_traceback(keyed):
    url, log = keyed
    r = httpx.get(url + UNKNOWN_ITEM, timeout=30)
    assert r.status_code == 404
    lines = log_lines(log, "NO-SUCH-BUILDING", wanted=2)
    text = log.read_text(encoding="utf-8")
    assert "Traceback" not in text and "ProviderItemNotFoundError" not in text, text[-3000:]
    said = [line for line in lines if "answered 404" in line]
    assert len(said) == 1 and said[0].startswith("INFO"), lines
    assert not [line for line in text.splitlines() if line.startswith(("ERROR", "WARNING"))], text[-3000:]


def test_a_server_error_keeps_its_traceback_with_the_request_id(served, watched):
    url, log = watched
    with psycopg.connect(served.db_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE live.topo_water RENAME TO topo_water_gone")
        try:
            r = httpx.get(url + "/collections/topo_water/items?limit=1", timeout=30)
        finally:
            conn.execute("ALTER TABLE live.topo_water_gone RENAME TO topo_water")
    assert r.status_code == 500
    rid = r.headers["x-request-id"]
    entries = [json.loads(line) for line in log_lines(log, rid, wanted=2)]
    errors = [e for e in entries if e["level"] == "ERROR"]
    assert errors and all(e["request_id"] == rid for e in errors), entries
    assert any("Traceback" in e.get("exc_info", "") and "topo_water" in e["exc_info"] for e in errors), entries
    assert [e["status"] for e in entries if e["logger"] == "geocloud.access"] == [500]


def test_a_wrong_log_format_or_metrics_setting_stops_the_start_saying_what_to_write():
    bad = geocloud_cli("serve", env={"GEOCLOUD_LOG_FORMAT": "xml"}, timeout=120)
    assert bad.returncode == 2 and "GEOCLOUD_LOG_FORMAT" in bad.stderr and "text or" in bad.stderr, bad.stderr
    bad = geocloud_cli("serve", env={"GEOCLOUD_METRICS": "key,10.0.0.0/33"}, timeout=120)
    said = " ".join(bad.stderr.split())
    assert bad.returncode == 3 and "GEOCLOUD_METRICS" in said and "10.0.0.0/8" in said and "Traceback" not in said


# --- the image and the topology (no Docker daemon here: their files are checked as written) ---

def packages(section: str) -> list[str]:
    out = subprocess.run([str(ROOT / "scripts" / "packages"), section], capture_output=True, text=True, check=True)
    return out.stdout.split()


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions ((INSTRUCTION, arguments), continuation lines joined), per stage."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        op, _, args = line.strip().partition(" ")
        if op.upper() == "FROM":
            stages.append([])
        stages[-1].append((op.upper(), " ".join(args.split())))
    return stages


def test_the_image_and_scripts_dev_install_from_the_one_list_and_the_image_has_the_viewer():
    web, image = dockerfile_stages()
    listed = [p for s in ("debian", "debian-dev", "debian-web", "debian-test", "debian-database") for p in packages(s)]
    assert "postgresql-client" in packages("debian") and packages("pip") == ["."]
    # each stage copies the list before the step that installs from it, and installs nothing else
    for stage, steps in (("web", web), ("image", image)):
        copied = next(i for i, (op, args) in enumerate(steps) if op == "COPY" and "scripts/packages.txt" in args)
        runs = [(i, args) for i, (op, args) in enumerate(steps) if op == "RUN"]
        installs = [(i, a) for i, a in runs if re.search(r"apt-get install|pip install|\bnpm (ci|install|\$\(scripts/packages npm\))", a)
                    and "/tmp/sbom-tool" not in a]
        assert installs and all(i > copied and "$(scripts/packages " in a for i, a in installs), (stage, installs)
        apt = [a for _, a in runs if "apt-get install" in a]
        assert not [p for a in apt for p in listed if re.search(rf"(?<![\w/-]){re.escape(p)}(?![\w-])", a)]
    assert any("apt-get install" in a and "$(scripts/packages debian)" in a for _, a in image)
    assert any("pip install" in a and "$(scripts/packages pip)" in a for _, a in image)
    assert any(a.startswith("npm $(scripts/packages npm)") for _, a in web)
    # the viewer's npm packages reach the image, where the viewer looks for them (project_dir/node_modules)
    assert ("COPY", "--from=web /src/node_modules ./node_modules") in image
    assert ("WORKDIR", "/srv/geocloud") in image and any("GEOCLOUD_PROJECT_DIR=/srv/geocloud" in a for _, a in image)
    dev = (ROOT / "scripts" / "dev").read_text(encoding="utf-8")
    for section in ("debian", "debian-dev", "debian-web", "debian-test", "debian-database", "pip", "npm"):
        assert re.search(rf"packages {section}\b", dev), section
    start = dev.index("system_packages() {")
    body = re.sub(r"command -v \w+", "", dev[start:dev.index("\n}\n", start)])  # a command, not a package
    assert all("$(packages " in line for line in body.splitlines() if "pkgs+=" in line or "local pkgs=" in line)
    assert not [p for p in listed if p != "python3-venv" and re.search(rf"(?<![\w/-]){re.escape(p)}(?![\w-])", body)]
    # every asset the viewer's page loads is in the image: geocloud's packaged static folder, or
    # MapLibre's dist folder from node_modules, copied from the npm stage (package-lock.json's packages)
    from geocloud.serve.portal import viewer

    html = (viewer.STATIC.parent / "templates" / "viewer.html").read_text(encoding="utf-8")
    refs = re.findall(r'(?:src|href)="\{\{ base \}\}/map/(static/[^"]+)"', html)
    assert len(refs) >= 4 and '"serve/portal/templates/*"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    lock = json.loads((ROOT / "package-lock.json").read_text(encoding="utf-8"))
    mounts = {r.path: r for r in viewer.routes if hasattr(r, "app") and r.path.startswith("/map/static")}
    for ref in refs:
        path = "/map/" + ref
        if path.startswith("/map/static/maplibre-gl/"):
            assert "node_modules/maplibre-gl" in lock["packages"] and "/map/static/maplibre-gl" in mounts
            assert (ROOT / "node_modules" / "maplibre-gl" / "dist" / ref.rsplit("/", 1)[1]).is_file(), ref
        else:
            assert (viewer.STATIC / ref.removeprefix("static/")).is_file() and '"serve/portal/static/*"' in pyproject, ref
    assert ("COPY", "geocloud ./geocloud") in image and ("COPY", "styles ./styles") in image  # basemap.json


def test_the_compose_file_is_the_production_topology(tmp_path):
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert {"postgis", "postgis-replica", "geocloud", "loadbalancer"} <= set(services)
    assert [name for name, s in services.items() if "ports" in s] == ["loadbalancer"]  # one published port
    assert all("healthcheck" in s for s in services.values())
    app = services["geocloud"]
    assert app["deploy"]["replicas"] >= 2 and "/health/ready" in " ".join(app["healthcheck"]["test"])
    writes, reads = app["environment"]["GEOCLOUD_DATABASE_URL"], app["environment"]["GEOCLOUD_DATABASE_READ_URL"]
    assert "@postgis:5432," in writes and "target_session_attrs=read-write" in writes  # the primary first
    assert "@postgis-replica:5432/" in reads
    lb_address = services["loadbalancer"]["networks"]["backend"]["ipv4_address"]
    assert app["environment"]["GEOCLOUD_TRUSTED_PROXIES"] == lb_address
    replica = services["postgis-replica"]
    script = next(v.split(":")[0] for v in replica["volumes"] if "replica-entrypoint" in v)
    assert "pg_basebackup" in (ROOT / script).read_text() and " -R " in (ROOT / script).read_text()
    assert replica["depends_on"]["postgis"]["condition"] == "service_healthy"
    primary_init = next(v.split(":")[0] for v in services["postgis"]["volumes"] if "initdb" in v)
    assert "REPLICATION" in (ROOT / primary_init).read_text()
    haproxy = (ROOT / "deploy" / "haproxy.cfg").read_text()
    assert "option httpchk GET /health/ready" in haproxy and re.search(r"server-template \S+ \S+ geocloud:8000 check", haproxy)
    # docker-compose (Debian's, scripts/packages.txt's debian-dev) validates it without a daemon, and
    # refuses it without the passwords
    env = {**os.environ, "GEOCLOUD_DB_PASSWORD": "x", "GEOCLOUD_REPLICATION_PASSWORD": "y"}
    checked = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                             capture_output=True, text=True, env=env, cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    env.pop("GEOCLOUD_REPLICATION_PASSWORD")
    refused = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                             capture_output=True, text=True, env=env, cwd=tmp_path)
    assert refused.returncode != 0 and "GEOCLOUD_REPLICATION_PASSWORD" in refused.stderr


def test_the_cli_starts_without_the_server_stack():
    """Operators run the CLI many times a day (and the tests a hundred times): a command that does not
    serve must not import pygeoapi, titiler or the portal (pygeoapi's import alone took 3-8 s of
    CPU where jsonschema's optional format checkers are installed)."""
    probe = ("import sys\nfrom geocloud.cli import main\nsys.argv = ['geocloud', '--help']\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('pygeoapi', 'titiler', 'geocloud.serve.app', 'geocloud.serve.portal') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_the_cli_leaves_its_imports_to_the_operating_system_at_exit():
    """Freeing, at exit, the objects an ETL run's imports made took 0.2-0.4 s: the CLI freezes them
    before the interpreter ends, and atexit handlers (here one that reports) still run."""
    probe = ("import atexit, gc, sys\natexit.register(lambda: print('frozen', gc.get_freeze_count()))\n"
             "from geocloud.cli import main\nsys.argv = ['geocloud', '--help']\nmain()")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert int(out.stdout.split("frozen")[-1]) > 10_000, out.stdout
