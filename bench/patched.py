"""Run a ``geocloud`` command with a constant changed in-process, for what-if runs of the benchmarks:
what a switch geocloud does not have would cost or save. Nothing on disk changes.

    python bench/patched.py no_rate_limit,same_tile_work serve --port 8000
    python bench/patched.py no_web_mercator_copy etl run buildings buildings.shp

(Exact counts are a setting: GEOCLOUD_EXACT_COUNT_LIMIT.)

no_rate_limit         requests not counted for the rate limit at all
same_tile_work        vector tiles with the work of tipg run with TIPG_TILE_BUFFER=0: every feature
                      that meets the tile, clipped at its edge (no buffer), none dropped, none simplified
no_web_mercator_copy  an ETL run stages its tables without the stored Web Mercator geometry, so the
                      versions it publishes have none, and their Web Mercator tiles project every
                      feature with ST_Transform (as they do for a version published before it existed)
"""

import sys


def no_rate_limit() -> None:
    from geocloud.access import ratelimit

    ratelimit.hit = lambda client: None


def same_tile_work() -> None:
    from geocloud.serve.tiles import vectortiles

    vectortiles.BUFFER = 0  # tipg selects features meeting the tile itself, so only a buffer of 0 matches
    vectortiles.GENERALIZE_FROM = float("inf")
    vectortiles.SIMPLIFY_FROM = float("inf")


def no_web_mercator_copy() -> None:
    from psycopg import sql

    from geocloud.catalog.models import WEB_MERCATOR_GEOM
    from geocloud.etl import stage

    create = stage.create_staging

    def without(conn, layer, run_id):
        name = create(conn, layer, run_id)  # empty: dropping the column costs nothing, and COPY skips it
        conn.execute(sql.SQL("ALTER TABLE staging.{} DROP COLUMN IF EXISTS {}").format(
            sql.Identifier(name), sql.Identifier(WEB_MERCATOR_GEOM)))
        return name

    stage.create_staging = without


PATCHES = {f.__name__: f for f in (no_rate_limit, same_tile_work, no_web_mercator_copy)}

if __name__ == "__main__":
    for name in sys.argv[1].split(","):
        if name not in PATCHES:
            sys.exit(f"unknown patch {name!r}; use any of {', '.join(PATCHES)}")
        PATCHES[name]()
    from geocloud.cli import main

    sys.argv = ["geocloud", *sys.argv[2:]]
    main()
