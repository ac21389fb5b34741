"""bench/tiles: vector tiles of geocloud and tipg, and raster tiles of geocloud and stock TiTiler,
on the same PostGIS data and the same COG, one server process each, 4 concurrent clients.

Cold: every tile requested once with geocloud's tile cache emptied first, in rounds until at least
300 tiles were made (tipg and TiTiler have no cache, so their cold and warm passes do the same
work); geocloud's and the peer's cold passes alternate three times and the median pair is kept.
The features per tile of both sides are printed next to the ratio, and a second cold run makes the
work the same: tipg selects the features that meet the tile itself (and clips them with a 256-unit
buffer), geocloud those that meet the tile plus its 64-unit buffer, dropping sub-pixel polygons;
so the second run has tipg with ``TIPG_TILE_BUFFER=0`` and geocloud with no buffer, nothing dropped
and nothing simplified (the ``same_tile_work`` what-if of bench/patched.py: geocloud has no switch),
against tipg twice: as shipped, and tuned with geocloud's session settings (its connection URL's
server settings, as bench/features.py gives them), where the target applies. Each cold pass prints
each side's CPU milliseconds per tile, its server's processes and its PostGIS connections apart.

Warm (``--parts warm``): geocloud's tile cache against the physical limit, nginx (``apt-get install
nginx``, one worker process as geocloud has one) serving the very bytes geocloud served as static
files, and against the floor of any Python server (bench/static_asgi.py: uvicorn answering with the
same files and nothing else; and, when granian is installed (the bench extra), the same application
under granian, one worker, uvloop, its floor printed beside uvicorn's), and against the floor of
geocloud's own HTTP layer (the same script under serve/protocol.py, answering from memory as each
request is read: what any warm answer of geocloud costs before its access check, rate limit, request
id and log); same client and concurrency, 5 seconds a pass from wrk when it is
installed (``apt-get install wrk``), else from the Python load generator; passes alternated three
times and the median pair kept. Each side's CPU time per tile is printed too: on a loaded machine
the rate follows the CPU share a server is given, its CPU per tile much less. tipg has no cache, so
it has no warm pass.

``--what-if no_web_mercator_copy`` loads the city without the stored Web Mercator geometry (see
bench/patched.py), so that every Web Mercator tile projects its features with ST_Transform.

    .venv/bin/python bench/tiles.py [--scale 50] [--parts vector,warm,raster,auth] [--sets "roads z14,roads z16"] [--what-if PATCHES]
"""

import argparse
import gzip
import http.client
import shutil
import sys
import tempfile
import urllib.parse
from pathlib import Path

import mapbox_vector_tile
import morecantile
import psycopg

from common import (ROOT, SESSION_SETTINGS, agency_key, backend_pids, cpu_of, free_port, geocloud_cmd,
                    internal_project, load, load_city, median_pair, nginx, process_tree, rounds, sample_city, scratch_database, server, sustained)

from geocloud import db

WEB = morecantile.tms.get("WebMercatorQuad")
CITY = (120.55, 24.08, 120.75, 24.25)
CORE = (120.62, 24.14, 120.68, 24.19)


def tiles(bbox, z: int, limit: int) -> list[morecantile.Tile]:
    found = list(WEB.tiles(*bbox, zooms=[z]))
    step = max(1, len(found) // limit)
    return found[::step][:limit]


def fetch_all(base: str, paths: list[str]) -> dict[str, bytes]:
    """Every tile's body, one request at a time."""
    host = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
    found = {}
    for path in paths:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status not in (200, 204):
            sys.exit(f"{resp.status} from {base}{path}: {body[:200]!r}")
        found[path] = body
    conn.close()
    return found


def features_per_tile(tiles_bytes) -> float:
    """Mean number of features per tile over every MVT layer (empty tiles count as 0)."""
    total, count = 0, 0
    for body in tiles_bytes:
        count += 1
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        if body:
            total += sum(len(layer["features"]) for layer in mapbox_vector_tile.decode(body).values())
    return total / max(1, count)


def listening_pids(base: str) -> list[int]:
    """The processes holding the listening socket of ``base`` (a server and its workers), from ``ss``."""
    import re
    import subprocess

    port = urllib.parse.urlsplit(base).port
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return sorted({int(pid) for pid in re.findall(r"pid=(\d+)", out)})


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU seconds the processes ``pids`` have used (/proc/PID/stat)."""
    import os

    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat(5))
    return total / os.sysconf("SC_CLK_TCK")


def sustained_cpu(base: str, paths: list[str], seconds: int = 5) -> dict:
    """``sustained`` with the server's CPU time per request added (``cpu_us``): under a loaded
    machine the rate follows the CPU share a server gets, its CPU per request much less so."""
    pids = listening_pids(base)
    before = cpu_seconds(pids)
    found = sustained(base, paths, seconds)
    found["cpu_us"] = (cpu_seconds(pids) - before) / (found["rps"] * seconds) * 1e6
    return found


def warm(base: str, paths: list[str], label: str, results: dict, per_tile: dict) -> None:
    """geocloud's warm tiles against nginx serving the very bytes geocloud served, as static files
    (one worker process as geocloud has one), and against the floor of a Python server (bench/
    static_asgi.py: uvicorn answering with the same files, nothing else): all up, passes alternated
    three times (one server measured while the others idle) and the median pair kept for each."""
    served = fetch_all(base, paths)  # fills the cache, and gives the bytes nginx serves
    per_tile.setdefault((label, "geocloud"), features_per_tile(served.values()))
    with tempfile.TemporaryDirectory(prefix="bench-static-") as tmp:
        for path, body in served.items():
            file = Path(tmp) / path.lstrip("/")
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(body)
        port = free_port()
        with nginx(f"location / {{ root {tmp}; default_type application/vnd.mapbox-vector-tile; }}",
                   free_port()) as static, \
                server([sys.executable, "-m", "uvicorn", "static_asgi:app", "--app-dir", str(ROOT / "bench"), "--port",
                        str(port), "--log-level", "error", "--no-access-log"], port, paths[0],
                       env={"BENCH_STATIC_ROOT": tmp}, log_name="static-asgi") as floor:
            load(static, paths, 40)
            ours, limit = median_pair(lambda: sustained_cpu(base, paths), lambda: sustained_cpu(static, paths))
            ours_again, python = median_pair(lambda: sustained_cpu(base, paths), lambda: sustained_cpu(floor, paths))
            port = free_port()
            with server([sys.executable, str(ROOT / "bench" / "static_asgi.py"), str(port)], port, paths[0],
                        env={"BENCH_STATIC_ROOT": tmp}, log_name="static-asgi-protocol") as protocol:
                load(protocol, paths, 40)
                results[("vector", label, "geocloud (vs protocol)", "warm")], results[("vector", label, "protocol floor", "warm")] = \
                    median_pair(lambda: sustained_cpu(base, paths), lambda: sustained_cpu(protocol, paths))
            if shutil.which("granian", path=str(Path(sys.executable).parent)):
                port = free_port()
                with server([str(Path(sys.executable).parent / "granian"), "--interface", "asgi", "--loop", "uvloop",
                             "--workers", "1", "--no-access-log", "--log-level", "error", "--port", str(port),
                             "--working-dir", str(ROOT / "bench"), "static_asgi:app"], port, paths[0],
                            env={"BENCH_STATIC_ROOT": tmp}, log_name="static-asgi-granian") as granian:
                    load(granian, paths, 40)
                    results[("vector", label, "granian floor", "warm")], results[("vector", label, "uvicorn floor 2", "warm")] = \
                        median_pair(lambda: sustained_cpu(granian, paths), lambda: sustained_cpu(floor, paths))
    results[("vector", label, "geocloud", "warm")] = ours
    results[("vector", label, "nginx static", "warm")] = limit
    results[("vector", label, "geocloud (vs floor)", "warm")] = ours_again
    results[("vector", label, "uvicorn floor", "warm")] = python


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=50.0)
    ap.add_argument("--parts", default="vector,warm,raster,auth", help="which comparisons to run")
    ap.add_argument("--sets", default="", help="vector tile sets to run, comma-separated (e.g. 'roads z16'); default all")
    ap.add_argument("--what-if", default="", metavar="PATCHES",
                    help="load the city with bench/patched.py's PATCHES (e.g. no_web_mercator_copy)")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    per_tile: dict = {}   # (label, server) -> features per tile
    city = sample_city(args.scale)
    data_dir = ROOT / ".geocloud" / "bench" / "data"
    vector_sets = {"roads z10": ("roads", tiles(CITY, 10, 50)), "roads z14": ("roads", tiles(CITY, 14, 150)),
                   "roads z16": ("roads", tiles(CORE, 16, 200)), "buildings z14": ("buildings", tiles(CITY, 14, 150)),
                   "buildings z16": ("buildings", tiles(CORE, 16, 200))}
    if args.sets:
        vector_sets = {label: found for label, found in vector_sets.items() if label in args.sets.split(",")}
    results: dict = {}
    with scratch_database() as url:
        db.upgrade(url)
        load_city(url, city, ["roads", "buildings", "satellite"], args.what_if)
        with psycopg.connect(url) as conn:
            storage = conn.execute("SELECT storage FROM geocloud.layer_versions WHERE layer = 'satellite' "
                                   "AND state = 'live'").fetchone()[0]
        cog = data_dir / storage / "satellite-webmercator.tif"  # what geocloud reads for WebMercatorQuad tiles
        sat_tiles = tiles((120.60, 24.12, 120.69, 24.20), 15, 120) + tiles((120.60, 24.12, 120.69, 24.20), 13, 20)
        env = {"GEOCLOUD_DATABASE_URL": url, "GEOCLOUD_DATA_DIR": str(data_dir)}

        def empty_cache():
            shutil.rmtree(data_dir / "tile-cache", ignore_errors=True)

        warm_up = [f"/collections/roads/tiles/WebMercatorQuad/12/{t.y}/{t.x}" for t in tiles(CITY, 12, 20)]
        port = free_port()
        with server([sys.executable, "-m", "geocloud", "serve", "--port", str(port)], port, "/conformance",
                    env=env, log_name="geocloud-tiles") as base:
            load(base, warm_up, 40)  # open the connection pool and read the catalog, as a running server has
            # Vector: geocloud and tipg on the same tables, cold passes alternated three times (both
            # servers up, one idle) and the median pair kept, like the raster and key comparisons.
            port = free_port()
            with server([sys.executable, "-m", "uvicorn", "tipg.main:app", "--port", str(port), "--log-level",
                         "error"], port, "/collections", env={"DATABASE_URL": url, "TIPG_DB_SCHEMAS": '["live"]'},
                        log_name="tipg-tiles") as tipg:
                load(tipg, [f"/collections/live.roads/tiles/WebMercatorQuad/12/{t.x}/{t.y}"
                            for t in tiles(CITY, 12, 20)], 40)
                same_port, tipg0_port, tuned_port = free_port(), free_port(), free_port()
                # asyncpg reads no PGOPTIONS; it takes the connection URL's query parameters as settings
                tuned_url = url + "?" + urllib.parse.urlencode(SESSION_SETTINGS)
                with server(geocloud_cmd(same_port, "same_tile_work"), same_port, "/conformance", env=env,
                            log_name="geocloud-tiles-same-work") as same, \
                        server([sys.executable, "-m", "uvicorn", "tipg.main:app", "--port", str(tipg0_port),
                                "--log-level", "error"], tipg0_port, "/collections",
                               env={"DATABASE_URL": url, "TIPG_DB_SCHEMAS": '["live"]', "TIPG_TILE_BUFFER": "0"},
                               log_name="tipg-tiles-buffer0") as tipg0, \
                        server([sys.executable, "-m", "uvicorn", "tipg.main:app", "--port", str(tuned_port),
                                "--log-level", "error"], tuned_port, "/collections",
                               env={"DATABASE_URL": tuned_url, "TIPG_DB_SCHEMAS": '["live"]', "TIPG_TILE_BUFFER": "0"},
                               log_name="tipg-tiles-buffer0-tuned") as tuned:
                    load(same, warm_up, 40)
                    for peer in (tipg0, tuned):
                        load(peer, [f"/collections/live.roads/tiles/WebMercatorQuad/12/{t.x}/{t.y}"
                                    for t in tiles(CITY, 12, 20)], 40)
                    for label, (layer, tl) in vector_sets.items():
                        paths = [f"/collections/{layer}/tiles/WebMercatorQuad/{t.z}/{t.y}/{t.x}" for t in tl]
                        peer_paths = [f"/collections/live.{layer}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}" for t in tl]
                        if "vector" in parts:
                            cold(url, (base, tipg, same, tipg0, tuned), paths, peer_paths, label, empty_cache,
                                 results, per_tile)
                        if "warm" in parts:
                            warm(base, paths, label, results, per_tile)
            # Rasters: geocloud and stock TiTiler on the same COG, cold passes alternated three times
            # (both servers up, one idle) and the median pair kept; a cold raster pass varies by
            # several per cent from one run to the next, more than the difference being measured.
            if "raster" in parts:
                raster(base, cog, sat_tiles, empty_cache, results)
            if "auth" in parts:
                authorization(base, url, env, warm_up, vector_sets, empty_cache, results)
    report(results, per_tile, vector_sets)


def cold_pass(url: str, base, paths: list[str], before_each) -> dict:
    """``rounds`` with each side's CPU milliseconds per tile: the server's own processes (``cpu_app``)
    and the PostGIS connections to the bench database (``cpu_db``; the other servers idle meanwhile)."""
    count = max(1, -(-300 // len(paths))) * len(paths)  # what ``rounds`` requests
    app_before = cpu_of(process_tree(base.pid))
    db_before = {pid: cpu_of([pid]) for pid in backend_pids(url)}
    found = rounds(base, paths, before_each)
    db_spent = sum(cpu_of([pid]) - db_before.get(pid, 0.0) for pid in backend_pids(url))  # new ones from 0
    return {**found, "cpu_app": (cpu_of(process_tree(base.pid)) - app_before) * 1000 / count,
            "cpu_db": db_spent * 1000 / count}


def cold(url, servers, paths, peer_paths, label, empty_cache, results, per_tile) -> None:
    """Cold vector tiles of geocloud and tipg as shipped, then doing the same work (tipg with a buffer
    of 0, as shipped and with geocloud's session settings: the target applies to the latter), each
    as the median of three alternated pairs, with the features per tile of every side."""
    base, tipg, same, tipg0, tuned = servers
    ours, peer = median_pair(lambda: cold_pass(url, base, paths, empty_cache),
                             lambda: cold_pass(url, tipg, peer_paths, lambda: None))
    results[("vector", label, "geocloud", "cold")] = ours
    results[("vector", label, "tipg", "cold")] = peer
    per_tile[(label, "geocloud")] = features_per_tile(fetch_all(base, paths).values())
    per_tile[(label, "tipg")] = features_per_tile(fetch_all(tipg, peer_paths).values())
    for name, peer_base in (("tipg buffer 0", tipg0), ("tipg buffer 0 tuned", tuned)):
        ours, peer = median_pair(lambda: cold_pass(url, same, paths, empty_cache),
                                 lambda: cold_pass(url, peer_base, peer_paths, lambda: None))
        results[("vector", label, f"geocloud same work vs {name}", "cold")] = ours
        results[("vector", label, name, "cold")] = peer
        per_tile[(label, name)] = features_per_tile(fetch_all(peer_base, peer_paths).values())
    empty_cache()
    per_tile[(label, "geocloud same work")] = features_per_tile(fetch_all(same, paths).values())
    empty_cache()


def raster(base, cog, sat_tiles, empty_cache, results) -> None:
    """geocloud and stock TiTiler on the same COG, cold passes alternated three times (both servers
    up, one idle) and the median pair kept; a cold raster pass varies by several per cent from one run
    to the next, more than the difference being measured."""
    load(base, ["/rasters/satellite/info"], 10)
    ours_paths = [f"/rasters/satellite/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png" for t in sat_tiles]
    port = free_port()
    with server([sys.executable, "-m", "uvicorn", "titiler.application.main:app", "--port", str(port),
                 "--log-level", "error"], port, "/healthz", log_name="titiler") as titiler:
        load(titiler, [f"/cog/info?url={cog}"], 10)
        peer_paths = [f"/cog/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?url={cog}" for t in sat_tiles]
        ours, peer = median_pair(lambda: rounds_cpu(base, ours_paths, empty_cache),
                                 lambda: rounds_cpu(titiler, peer_paths, lambda: None))
        results[("raster", "satellite z13+z15", "geocloud", "cold")] = ours
        results[("raster", "satellite z13+z15", "TiTiler (stock)", "cold")] = peer
        results[("raster", "satellite z13+z15", "geocloud", "warm")] = sustained_cpu(base, ours_paths)
        results[("raster", "satellite z13+z15", "TiTiler (stock)", "warm")] = sustained_cpu(titiler, peer_paths)


def rounds_cpu(base: str, paths: list[str], before_each, minimum: int = 300) -> dict:
    """``rounds`` with the server's CPU time per tile added (``cpu_us``), as ``sustained_cpu``."""
    pids = listening_pids(base)
    before = cpu_seconds(pids)
    found = rounds(base, paths, before_each, minimum)
    found["cpu_us"] = (cpu_seconds(pids) - before) / (max(1, -(-minimum // len(paths))) * len(paths)) * 1e6
    return found


def authorization(base, url, env, warm_up, vector_sets, empty_cache, results) -> None:
    """The same server code with buildings made internal, read with a key, alternated with the
    anonymous public run three times (both servers up; one idles)."""
    key_headers = {"X-API-Key": agency_key(url)}
    port = free_port()
    with server(geocloud_cmd(port), port, "/conformance",
                env={**env, "GEOCLOUD_PROJECT_DIR": str(internal_project("buildings"))},
                log_name="geocloud-tiles-key") as keyed:
        load(keyed, warm_up, 40, headers=key_headers)  # the same warm-up as the anonymous run
        for label in ("buildings z14", "buildings z16"):
            layer, tl = vector_sets[label]
            paths = [f"/collections/{layer}/tiles/WebMercatorQuad/{t.z}/{t.y}/{t.x}" for t in tl]
            for phase in ("cold", "warm"):
                measure = (lambda b, h=None: rounds(b, paths, empty_cache, headers=h)) if phase == "cold" \
                    else (lambda b, h=None: sustained(b, paths, headers=h))
                anonymous, keyed_run = median_pair(lambda: measure(base), lambda: measure(keyed, key_headers))
                results[("vector", label, "geocloud key", phase)] = keyed_run
                results[("vector", label, "geocloud anon", phase)] = anonymous


def cold_report(label: str, results: dict, per_tile: dict) -> None:
    """One tile set's cold ratios: as shipped, then the same work against tipg as shipped and tuned
    (geocloud's session settings: the target applies there), with features and CPU ms per tile."""
    def cpu(r: dict) -> str:
        return f"{r['cpu_app'] + r['cpu_db']:.2f} ms ({r['cpu_app']:.2f} server + {r['cpu_db']:.2f} PostGIS)"
    runs = [("as shipped", "geocloud", "geocloud", "tipg", "tipg"),
            ("same work", "geocloud same work vs tipg buffer 0", "geocloud same work", "tipg buffer 0", "tipg buffer 0"),
            ("same work, tipg tuned", "geocloud same work vs tipg buffer 0 tuned", "geocloud same work",
             "tipg buffer 0 tuned", "tipg buffer 0 tuned")]
    for title, ours_key, ours_tiles, peer_key, peer_tiles in runs:
        ours, peer = results[("vector", label, ours_key, "cold")], results[("vector", label, peer_key, "cold")]
        ratio = ours["rps"] / peer["rps"]
        target = f"; target >= 1.5x: {'met' if ratio >= 1.5 else 'NOT met'}" if title.endswith("tuned") else ""
        print(f"vector {label:<15} cold, {title}: geocloud/tipg {ratio:.2f}x ({ours['rps']:.1f} vs {peer['rps']:.1f} "
              f"tiles/s{target}); features per tile {per_tile[(label, ours_tiles)]:.1f} vs "
              f"{per_tile[(label, peer_tiles)]:.1f}; CPU per tile {cpu(ours)} vs {cpu(peer)}")


def report(results: dict, per_tile: dict, vector_sets: dict) -> None:
    print(f"\n{'kind':<8}{'tiles':<20}{'server':<20}{'pass':<6}{'tiles/s':>9}{'p50 ms':>9}{'p95 ms':>9}")
    for (kind, label, name, phase), r in results.items():
        print(f"{kind:<8}{label:<20}{name:<20}{phase:<6}{r['rps']:>9.1f}{r['p50']:>9.1f}{r['p95']:>9.1f}")
    print()
    print("(figures measured on the machine as it was: report its load beside them)")
    for label in vector_sets:
        if ("vector", label, "geocloud", "cold") in results:
            cold_report(label, results, per_tile)
        if ("vector", label, "geocloud", "warm") in results:
            warm, limit = results[("vector", label, "geocloud", "warm")], results[("vector", label, "nginx static", "warm")]
            ratio = warm["rps"] / limit["rps"]
            print(f"vector {label:<15} warm: geocloud/nginx static {ratio:.2f}x ({warm['rps']:.0f} vs {limit['rps']:.0f} "
                  f"tiles/s, median of 3 alternated pairs; target >= 0.33x: {'met' if ratio >= 0.33 else 'NOT met'}); "
                  f"server CPU per tile {warm['cpu_us']:.0f} vs {limit['cpu_us']:.0f} us "
                  f"({limit['cpu_us'] / warm['cpu_us']:.2f}x)")
            again, floor = results[("vector", label, "geocloud (vs floor)", "warm")], results[("vector", label, "uvicorn floor", "warm")]
            print(f"vector {label:<15} warm: geocloud/uvicorn floor (bench/static_asgi.py) {again['rps'] / floor['rps']:.2f}x "
                  f"({again['rps']:.0f} vs {floor['rps']:.0f} tiles/s); CPU per tile {again['cpu_us']:.0f} vs "
                  f"{floor['cpu_us']:.0f} us; the floor is {floor['rps'] / limit['rps']:.2f}x nginx")
            ours3, floor = results[("vector", label, "geocloud (vs protocol)", "warm")], results[("vector", label, "protocol floor", "warm")]
            print(f"vector {label:<15} warm: geocloud/protocol floor (bench/static_asgi.py under serve/protocol.py, from memory) "
                  f"{ours3['rps'] / floor['rps']:.2f}x ({ours3['rps']:.0f} vs {floor['rps']:.0f} tiles/s); CPU per tile "
                  f"{ours3['cpu_us']:.0f} vs {floor['cpu_us']:.0f} us; the floor is {floor['rps'] / limit['rps']:.2f}x nginx "
                  f"by rate, {limit['cpu_us'] / floor['cpu_us']:.2f}x by CPU per tile")
            if ("vector", label, "granian floor", "warm") in results:
                granian, floor = results[("vector", label, "granian floor", "warm")], results[("vector", label, "uvicorn floor 2", "warm")]
                print(f"vector {label:<15} warm: granian floor / uvicorn floor (bench/static_asgi.py under each) "
                      f"{granian['rps'] / floor['rps']:.2f}x ({granian['rps']:.0f} vs {floor['rps']:.0f} tiles/s); "
                      f"CPU per tile {granian['cpu_us']:.0f} vs {floor['cpu_us']:.0f} us")
    for label in ("buildings z14", "buildings z16"):
        for phase in ("cold", "warm"):
            if ("vector", label, "geocloud key", phase) not in results:
                continue
            keyed, ours = results[("vector", label, "geocloud key", phase)], results[("vector", label, "geocloud anon", phase)]
            print(f"vector {label:<15} {phase}: key on an internal layer / anonymous on a public layer "
                  f"{keyed['rps'] / ours['rps']:.3f} (median of 3 alternated pairs)")
    for phase in ("cold", "warm"):
        if ("raster", "satellite z13+z15", "geocloud", phase) not in results:
            continue
        ours = results[("raster", "satellite z13+z15", "geocloud", phase)]
        peer = results[("raster", "satellite z13+z15", "TiTiler (stock)", phase)]
        print(f"raster satellite        {phase}: geocloud/TiTiler {ours['rps'] / peer['rps']:.2f}x"
              f"{' (median of 3 alternated pairs)' if phase == 'cold' else ''}"
              f"{'; target >= 1.0x: ' + ('met' if ours['rps'] >= peer['rps'] else 'NOT met') if phase == 'cold' else ''}; "
              f"server CPU per tile {ours['cpu_us'] / 1000:.2f} vs {peer['cpu_us'] / 1000:.2f} ms")


if __name__ == "__main__":
    main()
