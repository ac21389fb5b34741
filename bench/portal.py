"""bench/portal: the portal's pages with 500 agency layers in the catalog (#18: home, search and
layer pages under 100 ms p95 on the server).

The sample city's district layer is loaded through the real ETL; 500 agency layers are then
registered through the registry (as ``PUT /manage/layers/{id}`` does), owned by the agencies in
turn, a third each public, internal and restricted, with titles, keywords and fields of their own.
Their live data is the district table copied, with a live version row each (what a publish writes),
so that each is a live layer with a page, at a fraction of 500 ETL runs' time. One server process;
one client at a time, so a request's latency is the server's time plus a loopback round trip.

    .venv/bin/python bench/portal.py [--layers 500] [--requests 200]
"""

import argparse
import json
import sys
import urllib.parse

import psycopg
from psycopg import sql

from common import ROOT, agency_key, free_port, geocloud_cmd, load, load_city, sample_city, scratch_database, server

from geocloud import db
from geocloud.catalog import load_catalog, registry

LEVELS = ("public", "internal", "restricted")
HTML = {"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8", "Accept-Language": "zh-TW"}
SUBJECTS = [("路燈", "street lights"), ("公園", "parks"), ("停車場", "car parks"), ("消防栓", "fire hydrants"),
            ("公車站", "bus stops"), ("學校", "schools"), ("排水", "drainage"), ("里界", "village boundaries")]


def entry(core, i: int, owner: str) -> dict:
    """A catalog entry for agency layer ``i``: the district layer's schema, its own id, titles and access."""
    base = core.layers["districts"].model_dump(mode="json", by_alias=True, exclude_none=True)
    zh, en = SUBJECTS[i % len(SUBJECTS)]
    level = LEVELS[i % len(LEVELS)]
    base.pop("publishing", None)  # the portals' identifiers are the district layer's own
    return {**base, "id": f"agency_{i:04d}", "style": None,
            "title": {"zh-TW": f"{zh}圖層 {i}", "en": f"{en.capitalize()} layer {i}"},
            "description": {"zh-TW": f"{core.agencies[owner].name.zh_TW}提供的{zh}資料（第 {i} 號）",
                            "en": f"{en.capitalize()} from {core.agencies[owner].name.en} (number {i})"},
            "keywords": [zh, en, f"bench{i}"],
            "access": {"level": level, **({"grants": [{"agency": owner}]} if level == "restricted" else {})}}


def register_all(url: str, count: int) -> list[str]:
    core = load_catalog(ROOT / "layers", ROOT / "agencies.yml")
    owners = [code for code, agency in core.agencies.items() if agency.city_agency]
    ids = []
    with psycopg.connect(url, autocommit=True) as conn:
        live = conn.execute("SELECT run_id, feature_count, extent FROM geocloud.layer_versions "
                            "WHERE layer = 'districts' AND state = 'live'").fetchone()
        for i in range(count):
            layer = registry.register(conn, entry(core, i, owners[i % len(owners)]), owners[i % len(owners)],
                                      "bench", core, where=f"bench layer {i}")
            with conn.transaction():
                conn.execute(sql.SQL("CREATE TABLE live.{} AS TABLE live.districts").format(sql.Identifier(layer.id)))
                conn.execute("INSERT INTO geocloud.layer_versions (layer, version, run_id, state, storage, "
                             "feature_count, extent) VALUES (%s, 1, %s, 'live', %s, %s, %s)",
                             (layer.id, live[0], f"live.{layer.id}", live[1], live[2]))
                conn.execute("INSERT INTO geocloud.layer_events (layer, action, to_version, run_id, operator) "
                             "VALUES (%s, 'publish', 1, %s, 'bench')", (layer.id, live[0]))
            ids.append(layer.id)
    return ids


def quote(path: str) -> str:
    return urllib.parse.quote(path, safe="/?=&")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=500)
    parser.add_argument("--requests", type=int, default=200, help="requests per page kind (one at a time)")
    args = parser.parse_args()
    city = sample_city(1)
    with scratch_database("geocloud_bench_portal") as url:
        db.upgrade(url)
        load_city(url, city, ["districts", "zoning"])
        ids = register_all(url, args.layers)
        key = agency_key(url)
        port = free_port()
        pages = {
            "home": ["/"],
            "search, a word (分區)": [quote("/?q=分區")],
            "search, part of a word, English": ["/?q=light", "/?q=park", "/?q=hydr"],
            "search with filters": ["/?q=layer&kind=vector&access=public", "/?agency=TCG-FIRE&topic=boundaries"],
            "search, page 3": ["/?page=3"],
            "layer page (agency)": [f"/collections/{i}" for i in ids[::3][:20]],
            "layer page (core)": ["/collections/zoning", "/collections/districts"],
        }
        env = {"GEOCLOUD_DATABASE_URL": url, "GEOCLOUD_DATA_DIR": str(ROOT / ".geocloud" / "bench" / "data")}
        results = {}
        with server(geocloud_cmd(port), port, "/conformance", env, log_name="portal"):
            base = f"http://127.0.0.1:{port}"
            for who, headers in (("anonymous", HTML), ("agency key", {**HTML, "X-API-Key": key})):
                for name, paths in pages.items():
                    load(base, paths, 10, 1, headers)  # warm: the catalog, the search index, templates
                    found = load(base, paths, args.requests, 1, headers)
                    results[f"{who}: {name}"] = found
                    print(f"{who:10} {name:34} p50 {found['p50']:6.1f} ms  p95 {found['p95']:6.1f} ms", flush=True)
        worst = max(r["p95"] for r in results.values())
        print(json.dumps({"layers": len(ids) + 14, "worst_p95_ms": round(worst, 1)}))
        if worst >= 100:
            sys.exit(f"a page's p95 is {worst:.1f} ms, over the 100 ms target")


if __name__ == "__main__":
    main()
