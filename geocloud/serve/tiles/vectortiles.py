"""Mapbox Vector Tiles built by PostGIS (``ST_AsMVT``) for every vector layer, and a base map.

Generalization depends on the zoom, never on a feature count: lines and polygons are simplified
to half a pixel and polygons smaller than a pixel are left out; points are thinned to one per
pixel. Attributes are the catalog's fields; a layer answers only within its catalog zoom range.

``OFFSET 0`` keeps the inner query from being flattened: otherwise the planner pushes the outer
``geom IS NOT NULL`` into the scan and evaluates ST_AsMVTGeom (and ST_Transform) twice per feature.
"""

import morecantile
from psycopg import sql

from geocloud.catalog import Layer
from geocloud.catalog.models import WEB_MERCATOR_GEOM
from geocloud.db.pool import get_pool
from geocloud.serve.ogcapi.provider import column
from geocloud.serve.state import snapshot, tables
from geocloud.serve.tiles.tms import srid

EXTENT = 4096
BUFFER = 64
GENERALIZE_FROM = 2.0  # metres per pixel (about zoom 16 in Taichung): drop sub-pixel polygons above
SIMPLIFY_FROM = 20.0   # metres per pixel (about zoom 12): simplify lines and polygons above; finer, the
                       # MVT grid itself (4096 per tile) is the generalization and simplifying only costs
SIMPLIFY_POINTS = 16   # geometries with fewer vertices gain nothing from simplification


def layer_sql(layer: Layer, table: sql.Composable, tms: morecantile.TileMatrixSet,
              tile: morecantile.Tile) -> tuple[sql.Composable, list]:
    box = tms.xy_bounds(tile)
    tms_srid = srid(tms)
    pixel = (box.right - box.left) / 256.0
    margin = (box.right - box.left) * BUFFER / EXTENT
    env = sql.SQL("ST_MakeEnvelope(%s, %s, %s, %s, {})").format(sql.Literal(tms_srid))
    live = snapshot().layers.get(layer.id)
    stored = tms_srid == 3857 and live is not None and WEB_MERCATOR_GEOM in live.columns
    # stored projected: no per-feature transform; otherwise the tile's own CRS, or a live table from
    # before the projected column (after a rollback)
    column_name = WEB_MERCATOR_GEOM if stored else "geom"
    transform = not stored and tms_srid != layer.srid
    ground = pixel * (0.91 if tms_srid == 3857 else 1.0)  # metres: Web Mercator stretches ~1/cos(24°) here
    unit = ground if transform else pixel  # one pixel in the units of the column simplified and measured
    # the spatial index is on geom alone: the tile's box goes to the layer's CRS (its curved edges
    # stay well inside the buffer margin)
    query_env = sql.SQL("ST_Transform({}, {})").format(env, sql.Literal(layer.srid)) if tms_srid != layer.srid else env
    source = sql.SQL("t.{}").format(sql.Identifier(column_name))
    attrs = sql.SQL("").join(sql.SQL(", {} AS {}").format(column(layer, f.name), sql.Identifier(f.name))
                             for f in layer.fields)
    if layer.geometry.endswith("Point"):
        geom = source
        grid = sql.Literal(round(unit, 6))  # a literal: DISTINCT ON must repeat ORDER BY's expression exactly
        thin = sql.SQL("DISTINCT ON (ST_SnapToGrid({}, {}))").format(source, grid)
        order = sql.SQL("ORDER BY ST_SnapToGrid({}, {}), t.{}").format(source, grid, sql.Identifier(layer.key))
        thin_args, order_args, size_filter, size_args = [], [], sql.SQL(""), []
    else:
        coarse = ground > GENERALIZE_FROM
        simplify = ground > SIMPLIFY_FROM
        geom = sql.SQL("CASE WHEN ST_NPoints({g}) > {n} THEN ST_Simplify({g}, %s, true) ELSE {g} END").format(
            g=source, n=sql.Literal(SIMPLIFY_POINTS)) if simplify else source
        # in key order: a strong ETag promises the same bytes from every node, replica and restore,
        # whatever plan their statistics choose
        thin, thin_args, order_args = sql.SQL(""), [], []
        order = sql.SQL("ORDER BY t.{}").format(sql.Identifier(layer.key))
        polygons = layer.geometry.endswith("Polygon") and coarse
        size_filter = sql.SQL(" AND (ST_XMax({g}) - ST_XMin({g}) >= %s OR ST_YMax({g}) - ST_YMin({g}) >= %s)").format(
            g=source) if polygons else sql.SQL("")
        size_args = [unit, unit] if polygons else []
    if transform:
        geom = sql.SQL("ST_Transform({}, {})").format(geom, sql.Literal(tms_srid))
    geom_args = [unit / 2] if not layer.geometry.endswith("Point") and ground > SIMPLIFY_FROM else []
    query = sql.SQL("""
        SELECT ST_AsMVT(q, {name}, {extent}, 'geom') FROM (
            SELECT {thin} ST_AsMVTGeom({geom}, {env}, {extent}, {buffer}, true) AS geom{attrs}
            FROM {table} t
            WHERE t.geom && ST_Expand({query_env}, %s){size_filter}
            {order} OFFSET 0) q
        WHERE q.geom IS NOT NULL""").format(
        name=sql.Literal(layer.id), extent=sql.Literal(EXTENT), buffer=sql.Literal(BUFFER), thin=thin, geom=geom,
        env=env, attrs=attrs, table=table, query_env=query_env, size_filter=size_filter,
        order=order)
    bounds = [box.left, box.bottom, box.right, box.top]
    args = [*thin_args, *geom_args, *bounds, *bounds, margin, *size_args, *order_args]
    return query, args


def render(layers: list[Layer], tms: morecantile.TileMatrixSet, tile: morecantile.Tile) -> bytes:
    """One tile holding each of ``layers`` as an MVT layer (an empty result is b"")."""
    parts = []
    with get_pool().connection() as conn:
        versions = tables(conn, [layer.id for layer in layers])  # of the request's snapshot: see state.tables
        for layer in layers:
            query, args = layer_sql(layer, versions[layer.id], tms, tile)
            data = conn.execute(query, args).fetchone()[0]
            if data:
                parts.append(bytes(data))
    return b"".join(parts)  # MVT layers are protobuf messages: concatenation makes a multi-layer tile
