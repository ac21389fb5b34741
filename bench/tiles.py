"""bench/tiles: vector tiles of geocloud and tipg, and raster tiles of geocloud and stock TiTiler,
on the same PostGIS data and the same COG, one server process each, 4 concurrent clients.

Cold: every tile requested once with geocloud's tile cache emptied first, in rounds until at least
300 tiles were made (tipg and TiTiler have no cache, so their cold and warm passes do the same
work); geocloud's and the peer's cold passes alternate three times and the median pair is kept. Warm: the same tiles again for 5 seconds, from wrk when it is installed (``apt-get install
wrk``), else from the Python load generator.

    .venv/bin/python bench/tiles.py [--scale 50]
"""

import argparse
import shutil
import sys

import morecantile
import psycopg

from common import (ROOT, agency_key, free_port, internal_project, load, load_city, rounds, sample_city,
                    scratch_database, server, sustained)

from geocloud import db

WEB = morecantile.tms.get("WebMercatorQuad")
CITY = (120.55, 24.08, 120.75, 24.25)
CORE = (120.62, 24.14, 120.68, 24.19)


def tiles(bbox, z: int, limit: int) -> list[morecantile.Tile]:
    found = list(WEB.tiles(*bbox, zooms=[z]))
    step = max(1, len(found) // limit)
    return found[::step][:limit]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=50.0)
    args = ap.parse_args()
    city = sample_city(args.scale)
    data_dir = ROOT / ".geocloud" / "bench" / "data"
    vector_sets = {"roads z10": ("roads", tiles(CITY, 10, 50)), "roads z14": ("roads", tiles(CITY, 14, 150)),
                   "roads z16": ("roads", tiles(CORE, 16, 200)), "buildings z14": ("buildings", tiles(CITY, 14, 150)),
                   "buildings z16": ("buildings", tiles(CORE, 16, 200))}
    results: dict = {}
    with scratch_database() as url:
        db.upgrade(url)
        load_city(url, city, ["roads", "buildings", "satellite"])
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
                for label, (layer, tl) in vector_sets.items():
                    paths = [f"/collections/{layer}/tiles/WebMercatorQuad/{t.z}/{t.y}/{t.x}" for t in tl]
                    peer_paths = [f"/collections/live.{layer}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}" for t in tl]
                    pairs = sorted(((rounds(base, paths, empty_cache), rounds(tipg, peer_paths, lambda: None))
                                    for _ in range(3)), key=lambda ab: ab[0]["rps"] / ab[1]["rps"])
                    results[("vector", label, "geocloud", "cold")] = pairs[1][0]
                    results[("vector", label, "tipg", "cold")] = pairs[1][1]
                    results[("vector", label, "geocloud", "warm")] = sustained(base, paths)
                    results[("vector", label, "tipg", "warm")] = sustained(tipg, peer_paths)
            # Rasters: geocloud and stock TiTiler on the same COG, cold passes alternated three times
            # (both servers up, one idle) and the median pair kept; a cold raster pass varies by
            # several per cent from one run to the next, more than the difference being measured.
            load(base, ["/rasters/satellite/info"], 10)
            ours_paths = [f"/rasters/satellite/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png" for t in sat_tiles]
            port = free_port()
            with server([sys.executable, "-m", "uvicorn", "titiler.application.main:app", "--port", str(port),
                         "--log-level", "error"], port, "/healthz", log_name="titiler") as titiler:
                load(titiler, [f"/cog/info?url={cog}"], 10)
                peer_paths = [f"/cog/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?url={cog}" for t in sat_tiles]
                pairs = sorted(((rounds(base, ours_paths, empty_cache), rounds(titiler, peer_paths, lambda: None))
                                for _ in range(3)), key=lambda ab: ab[0]["rps"] / ab[1]["rps"])
                results[("raster", "satellite z13+z15", "geocloud", "cold")] = pairs[1][0]
                results[("raster", "satellite z13+z15", "TiTiler (stock)", "cold")] = pairs[1][1]
                results[("raster", "satellite z13+z15", "geocloud", "warm")] = sustained(base, ours_paths)
                results[("raster", "satellite z13+z15", "TiTiler (stock)", "warm")] = sustained(titiler, peer_paths)
            # Authorization cost: the same server code with buildings made internal, read with a key,
            # alternated with the anonymous public run three times (both servers up; one idles).
            key_headers = {"X-API-Key": agency_key(url)}
            port = free_port()
            with server([sys.executable, "-m", "geocloud", "serve", "--port", str(port)], port, "/conformance",
                        env={**env, "GEOCLOUD_PROJECT_DIR": str(internal_project("buildings"))},
                        log_name="geocloud-tiles-key") as keyed:
                load(keyed, warm_up, 40, headers=key_headers)  # the same warm-up as the anonymous run
                for label in ("buildings z14", "buildings z16"):
                    layer, tl = vector_sets[label]
                    paths = [f"/collections/{layer}/tiles/WebMercatorQuad/{t.z}/{t.y}/{t.x}" for t in tl]
                    for phase in ("cold", "warm"):
                        pairs = []
                        for _ in range(3):
                            measure = (lambda b, h=None: rounds(b, paths, empty_cache, headers=h)) if phase == "cold" \
                                else (lambda b, h=None: sustained(b, paths, headers=h))
                            pairs.append((measure(base), measure(keyed, key_headers)))
                        pairs.sort(key=lambda ab: ab[1]["rps"] / ab[0]["rps"])
                        anonymous, keyed_run = pairs[1]  # the median pair
                        results[("vector", label, "geocloud key", phase)] = keyed_run
                        results[("vector", label, "geocloud anon", phase)] = anonymous
    print(f"\n{'kind':<8}{'tiles':<20}{'server':<17}{'pass':<6}{'tiles/s':>9}{'p50 ms':>9}{'p95 ms':>9}")
    for (kind, label, name, phase), r in results.items():
        print(f"{kind:<8}{label:<20}{name:<17}{phase:<6}{r['rps']:>9.1f}{r['p50']:>9.1f}{r['p95']:>9.1f}")
    print()
    for label in vector_sets:
        for phase in ("cold", "warm"):
            ours, peer = results[("vector", label, "geocloud", phase)], results[("vector", label, "tipg", phase)]
            print(f"vector {label:<15} {phase}: geocloud/tipg {ours['rps'] / peer['rps']:.2f}x"
                  f"{' (median of 3 alternated pairs)' if phase == 'cold' else ''}")
    for label in ("buildings z14", "buildings z16"):
        for phase in ("cold", "warm"):
            keyed, ours = results[("vector", label, "geocloud key", phase)], results[("vector", label, "geocloud anon", phase)]
            print(f"vector {label:<15} {phase}: key on an internal layer / anonymous on a public layer "
                  f"{keyed['rps'] / ours['rps']:.3f} (median of 3 alternated pairs)")
    for phase in ("cold", "warm"):
        ours = results[("raster", "satellite z13+z15", "geocloud", phase)]
        peer = results[("raster", "satellite z13+z15", "TiTiler (stock)", phase)]
        print(f"raster satellite        {phase}: geocloud/TiTiler {ours['rps'] / peer['rps']:.2f}x"
              f"{' (median of 3 alternated pairs)' if phase == 'cold' else ''}")


if __name__ == "__main__":
    main()
