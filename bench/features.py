"""bench/features: geocloud against stock pygeoapi (its own PostgreSQL provider) and tipg, on the
same PostGIS data and machine, one server process each, 4 concurrent keep-alive clients.

Prints requests per second and p50/p95 latency for a 100-feature bbox page at city and street
scale and a CQL2 attribute filter, and the time of a full paged read of the buildings layer.

    .venv/bin/python bench/features.py [--scale 50] [--requests 400]
"""

import argparse
import json
import sys
from pathlib import Path

import psycopg
import yaml
from pygeoapi.openapi import get_oas

from common import (ROOT, agency_key, free_port, internal_project, load, load_city, page_all, sample_city,
                    scratch_database, server)

from geocloud import db
from geocloud.catalog import load_catalog

CITY_BBOX = "120.50,24.05,120.80,24.30"
STREET_BBOX = "120.6440,24.1590,120.6500,24.1650"
FILTER = "floors>=5"


def stock_pygeoapi_config(url: str, port: int, folder: Path) -> tuple[Path, Path]:
    info = psycopg.conninfo.conninfo_to_dict(url)
    ours = yaml.safe_load((ROOT / "pygeoapi-config.yml").read_text(encoding="utf-8"))
    config = {
        "server": {**ours["server"], "url": f"http://127.0.0.1:{port}", "languages": ["en-US"],
                   "limits": {"default_items": 100, "max_items": 10000}},
        "logging": {"level": "ERROR"},
        "metadata": ours["metadata"],
        "resources": {"buildings": {
            "type": "collection", "title": "buildings", "description": "buildings", "keywords": ["buildings"],
            "extents": {"spatial": {"bbox": [120.4, 23.9, 121.5, 24.5],
                                    "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}},
            "providers": [{
                "type": "feature", "name": "PostgreSQL",
                "data": {"host": info.get("host", "127.0.0.1"), "port": int(info.get("port", 5432)),
                         "dbname": info["dbname"], "user": info.get("user"), "password": info.get("password"),
                         "search_path": ["live", "public"]},
                "id_field": "building_id", "table": "buildings", "geom_field": "geom",
                # the catalog's fields: the table also holds geom_3857 (for tiles), which stock
                # pygeoapi would otherwise try to serve as a property
                "properties": [f.name for f in load_catalog(ROOT / "layers", ROOT / "agencies.yml").layers[
                    "buildings"].fields],
                "storage_crs": "http://www.opengis.net/def/crs/EPSG/0/3826"}]}},
    }
    config["server"].pop("limit", None)
    cfg = folder / "stock-pygeoapi.yml"
    cfg.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    oas = folder / "stock-openapi.json"
    oas.write_text(json.dumps(get_oas(config), default=str), encoding="utf-8")
    return cfg, oas


def scenarios(items: str, filter_lang: str = "&filter-lang=cql2-text") -> dict[str, list[str]]:
    """The requests of each scenario. Stock pygeoapi refuses filter-lang=cql2-text (it parses the
    filter as ECQL, which reads this simple comparison the same way), so it gets none."""
    return {
        "bbox page, city scale": [f"{items}?limit=100&bbox={CITY_BBOX}"],
        "bbox page, street scale": [f"{items}?limit=100&bbox={STREET_BBOX}"],
        "CQL2 attribute filter": [f"{items}?limit=100&filter={FILTER}{filter_lang}"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=50.0, help="sample city scale (50 = 100,000 buildings)")
    ap.add_argument("--requests", type=int, default=400, help="requests per scenario and server")
    args = ap.parse_args()
    city = sample_city(args.scale)
    folder = ROOT / ".geocloud" / "bench"
    results: dict[str, dict] = {}
    with scratch_database() as url:
        db.upgrade(url)
        load_city(url, city, ["buildings"])
        with psycopg.connect(url) as conn:  # every server meets the same warm database cache
            conn.execute("SELECT count(*), sum(length(ST_AsBinary(geom))) FROM live.buildings").fetchone()
        env = {"GEOCLOUD_DATABASE_URL": url}
        runs = []
        port = free_port()
        runs.append(("geocloud", [sys.executable, "-m", "geocloud", "serve", "--port", str(port)], port, env,
                     "/collections/buildings/items"))
        port = free_port()
        runs.append(("geocloud, key, internal", [sys.executable, "-m", "geocloud", "serve", "--port", str(port)], port,
                     {**env, "GEOCLOUD_PROJECT_DIR": str(internal_project("buildings"))}, "/collections/buildings/items"))
        key_headers = {"X-API-Key": agency_key(url)}
        port = free_port()
        cfg, oas = stock_pygeoapi_config(url, port, folder)
        runs.append(("pygeoapi (stock)", [sys.executable, "-m", "uvicorn", "pygeoapi.starlette_app:APP", "--port",
                                          str(port), "--log-level", "error"], port,
                     {"PYGEOAPI_CONFIG": str(cfg), "PYGEOAPI_OPENAPI": str(oas)}, "/collections/buildings/items"))
        port = free_port()
        runs.append(("tipg", [sys.executable, "-m", "uvicorn", "tipg.main:app", "--port", str(port), "--log-level",
                              "error"], port, {"DATABASE_URL": url, "TIPG_DB_SCHEMAS": '["live"]'},
                     "/collections/live.buildings/items"))
        for name, cmd, port, extra_env, items in runs:
            auth = key_headers if "key" in name else None
            ready = items + "?limit=1" + (f"&api_key={key_headers['X-API-Key']}" if auth else "")
            with server(cmd, port, ready, env=extra_env, log_name=name.split()[0].strip(",")) as base:
                row = {}
                lang = "" if name.startswith("pygeoapi") else "&filter-lang=cql2-text"
                for label, paths in scenarios(items, lang).items():
                    load(base, paths, 20, headers=auth)  # warm up
                    row[label] = load(base, paths, args.requests, headers=auth)
                seconds, count = page_all(base, items + "?limit=1000", headers=auth)
                row["full paged read"] = {"seconds": seconds, "features": count}
                results[name] = row
                print(f"  measured {name}", flush=True)
    n = next(iter(results.values()))["full paged read"]["features"]
    print(f"\nbuildings layer: {n:,} features; one server process each; 4 concurrent clients, "
          f"{args.requests} requests per scenario")
    print(f"{'scenario':<26}{'server':<24}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}")
    for label in scenarios("x"):
        for name, row in results.items():
            r = row[label]
            print(f"{label:<26}{name:<24}{r['rps']:>9.1f}{r['p50']:>9.1f}{r['p95']:>9.1f}")
        ours, stock = results["geocloud"][label]["rps"], results["pygeoapi (stock)"][label]["rps"]
        keyed = results["geocloud, key, internal"][label]["rps"]
        print(f"{'':<26}geocloud/pygeoapi {ours / stock:.2f}x   geocloud/tipg {ours / results['tipg'][label]['rps']:.2f}x"
              f"   key+internal / anonymous+public {keyed / ours:.3f}")
    print(f"\n{'full paged read (limit=1000)':<30}{'seconds':>9}{'features':>10}{'features/s':>12}")
    for name, row in results.items():
        r = row["full paged read"]
        print(f"  {name:<28}{r['seconds']:>9.1f}{r['features']:>10,}{r['features'] / r['seconds']:>12,.0f}")


if __name__ == "__main__":
    main()
