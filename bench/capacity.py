"""Capacity on paper from measurements: what one app core and the database spend per request.

    .venv/bin/python bench/capacity.py [--scale 5] [--requests 400]

One `geocloud serve` worker (one app core) over a scratch database holding the sample city; for each
kind of request (items pages, cold vector tiles rendered by PostGIS, warm tiles from the cache) it
sends a fixed number of requests from 4 keep-alive clients and reads, from /proc, the CPU seconds
the server process spent and those of the PostgreSQL backends serving it (found by the server's
application_name in pg_stat_activity). Per request: app CPU ms and database CPU ms; per app core:
requests a second at full use (1000 / app CPU ms). README's sizing table is computed from these
figures. The load generator runs on the same machine, so the wall-clock rate is printed but the
CPU figures are what the table uses.
"""

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import morecantile
import psycopg

from common import ROOT, free_port, geocloud_cmd, load, load_city, rounds, sample_city, scratch_database, server

WEB = morecantile.tms.get("WebMercatorQuad")
CITY = (120.55, 24.08, 120.75, 24.25)
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def backends(url: str) -> list[int]:
    """PIDs of the PostgreSQL backends connected for geocloud to the bench database."""
    with psycopg.connect(url, autocommit=True) as conn:
        return [r[0] for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'geocloud' AND datname = current_database() "
            "AND pid <> pg_backend_pid()")]


def measure(url: str, server_pid: int, count: int, run) -> dict:
    """Run ``run()`` (``count`` requests) and return its rate with the app's and the database's CPU
    per request."""
    before_db = {pid: cpu_seconds(pid) for pid in backends(url)}
    before_app = cpu_seconds(server_pid)
    result = run()
    app = cpu_seconds(server_pid) - before_app
    db = sum(cpu_seconds(pid) - before_db.get(pid, 0.0) for pid in backends(url))
    return {"requests": count, "wall_rps": round(result["rps"], 1), "p50_ms": round(result["p50"], 1),
            "app_cpu_ms": round(1000 * app / count, 3), "db_cpu_ms": round(1000 * db / count, 3),
            "per_app_core_rps": round(count / app, 1) if app else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=5.0, help="sample city scale (5: 10,000 buildings)")
    ap.add_argument("--requests", type=int, default=400, help="requests per kind")
    args = ap.parse_args()
    city = sample_city(args.scale)
    data = ROOT / ".geocloud" / "bench" / "data"
    with scratch_database("geocloud_capacity") as url:
        subprocess_env = {"GEOCLOUD_DATABASE_URL": url, "GEOCLOUD_DATA_DIR": str(data)}
        from geocloud import db

        db.upgrade(url)
        load_city(url, city, ["districts", "roads", "buildings"])
        with psycopg.connect(url) as conn:
            buildings = conn.execute("SELECT count(*) FROM live.buildings").fetchone()[0]
        port = free_port()
        cache = data / "tile-cache"
        with server(geocloud_cmd(port), port, "/conformance", subprocess_env, "capacity") as base:
            pid = _server_pid(port)
            items = [f"/collections/buildings/items?limit=100&bbox={x:.4f},{y:.4f},{x + 0.01:.4f},{y + 0.01:.4f}"
                     for x in (120.60, 120.62, 120.64, 120.66, 120.68) for y in (24.12, 24.14, 24.16, 24.18)]
            tile_paths = [f"/collections/buildings/tiles/WebMercatorQuad/{t.z}/{t.y}/{t.x}"
                          for t in list(WEB.tiles(*CITY, zooms=[15]))[:80]]
            load(base, items[:4] + tile_paths[:4], 40)  # warm up: connections, caches of the catalog
            cold = -(-args.requests // 2 // len(tile_paths)) * len(tile_paths)  # whole rounds, as rounds() sends
            results = {
                "items (100-feature bbox pages)": measure(url, pid, args.requests, lambda: load(
                    base, items, args.requests)),
                "tiles, cold (rendered by PostGIS)": measure(url, pid, cold, lambda: rounds(
                    base, tile_paths, lambda: shutil.rmtree(cache, ignore_errors=True), minimum=args.requests // 2)),
                "tiles, warm (tile cache)": measure(url, pid, args.requests * 2, lambda: load(
                    base, tile_paths, args.requests * 2)),
            }
    print(json.dumps({"scale": args.scale, "buildings": buildings, "cores": os.cpu_count(), "results": results},
                     indent=2, ensure_ascii=False))


def _server_pid(port: int) -> int:
    """The PID of the process listening on ``port`` (uvicorn, one worker: the server itself)."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[1].endswith(f":{port:04X}") and parts[3] == "0A":
            inode = parts[9]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]" for fd in os.listdir(f"/proc/{pid}/fd")):
                return int(pid)
        except (FileNotFoundError, PermissionError):
            continue
    sys.exit(f"no process listens on port {port}")


if __name__ == "__main__":
    main()
