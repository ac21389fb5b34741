"""Mapbox Vector Tiles built by PostGIS (``ST_AsMVT``) for every vector layer, and a base map.

Generalization depends on the zoom, never on a feature count: lines and polygons are simplified
to half a pixel and polygons smaller than a pixel are left out; points are thinned to one per
pixel. Attributes are the catalog's fields; a layer answers only within its catalog zoom range.

``OFFSET 0`` keeps the inner query from being flattened: otherwise the planner pushes the outer
``geom IS NOT NULL`` into the scan and evaluates ST_AsMVTGeom (and ST_Transform) twice per feature.

A tile is ONE statement, every layer of it and where their versions are (``state.versions_located``):
one round trip and no transaction, where a REPEATABLE READ transaction (``state.tables``), the
statement and its COMMIT took three, and half of PostgreSQL's time on a light tile.
"""

from functools import lru_cache
from typing import NamedTuple

import morecantile
from psycopg import errors, sql

from geocloud.catalog import Layer
from geocloud.catalog.models import WEB_MERCATOR_GEOM
from geocloud.db.pool import get_pool
from geocloud.errors import DatabaseUnavailable
from geocloud.serve.state import live_column, located, snapshot, version_parameters, versions_located
from geocloud.serve.tiles.tms import srid

EXTENT = 4096
BUFFER = 64
GENERALIZE_FROM = 2.0  # metres per pixel (about zoom 16 in Taichung): drop sub-pixel polygons above
SIMPLIFY_FROM = 20.0   # metres per pixel (about zoom 12): simplify lines and polygons above; finer, the
                       # MVT grid itself (4096 per tile) is the generalization and simplifying only costs
SIMPLIFY_POINTS = 16   # geometries with fewer vertices gain nothing from simplification


class _Shape(NamedTuple):
    """What a layer's tile statement depends on besides the tile's own box: its text is composed
    once per shape (psycopg's ``sql`` composition cost more Python than the rest of a cold tile)."""
    layer_id: str
    geometry: str
    key: str
    layer_srid: int
    fields: tuple[str, ...]
    columns: frozenset[str] | None  # of the live table, when the snapshot lists them (see state.live_column)
    table: str
    tms_srid: int
    stored: bool                    # the stored Web Mercator column is read: no per-feature transform
    grid: float | None              # points: the thinning grid, in the units of the column
    simplify: bool
    polygons: bool                  # sub-pixel polygons are left out


def layer_sql(layer: Layer, table: str, tms: morecantile.TileMatrixSet,
              tile: morecantile.Tile) -> tuple[_Shape, list]:
    """The shape of ``layer``'s part of a tile read from ``table`` (schema.name), and its parameters."""
    box = tms.xy_bounds(tile)
    tms_srid = srid(tms)
    pixel = (box.right - box.left) / 256.0
    margin = (box.right - box.left) * BUFFER / EXTENT
    live = snapshot().layers.get(layer.id)
    stored = tms_srid == 3857 and live is not None and WEB_MERCATOR_GEOM in live.columns
    # stored projected: no per-feature transform; otherwise the tile's own CRS, or a live table from
    # before the projected column (after a rollback)
    transform = not stored and tms_srid != layer.srid
    ground = pixel * (0.91 if tms_srid == 3857 else 1.0)  # metres: Web Mercator stretches ~1/cos(24°) here
    unit = ground if transform else pixel  # one pixel in the units of the column simplified and measured
    points = layer.geometry.endswith("Point")
    simplify = not points and ground > SIMPLIFY_FROM
    polygons = layer.geometry.endswith("Polygon") and ground > GENERALIZE_FROM
    shape = _Shape(layer.id, layer.geometry, layer.key, layer.srid, tuple(f.name for f in layer.fields),
                   live.columns if live is not None else None, table, tms_srid, stored,
                   round(unit, 6) if points else None, simplify, polygons)
    bounds = [box.left, box.bottom, box.right, box.top]
    return shape, [*([unit / 2] if simplify else []), *bounds, *bounds, margin, *([unit, unit] if polygons else [])]


@lru_cache(maxsize=1024)
def _statement(shapes: tuple[_Shape, ...]) -> str:
    """The statement of a tile of layers of ``shapes``: where their versions are (parameters: see
    ``state.version_parameters``), then the tile, each layer's part one after the other (an MVT
    layer is a protobuf message: concatenation makes a multi-layer tile); then each part's
    parameters."""
    parts = " || ".join(f"coalesce(({_part(shape)}), '')" for shape in shapes)
    return f"SELECT {versions_located(len(shapes))}, {parts}"


def _part(shape: _Shape) -> str:
    """The query of one layer's part of a tile; its parameters: the simplification tolerance (when it
    simplifies), the tile's box twice, the buffer margin, the smallest polygon size (when it drops)."""
    column_name = WEB_MERCATOR_GEOM if shape.stored else "geom"
    env = sql.SQL("ST_MakeEnvelope(%s, %s, %s, %s, {})").format(sql.Literal(shape.tms_srid))
    # the spatial index is on geom alone: the tile's box goes to the layer's CRS (its curved edges
    # stay well inside the buffer margin)
    query_env = sql.SQL("ST_Transform({}, {})").format(env, sql.Literal(shape.layer_srid)) \
        if shape.tms_srid != shape.layer_srid else env
    source = sql.SQL("t.{}").format(sql.Identifier(column_name))
    attrs = sql.SQL("").join(sql.SQL(", {} AS {}").format(live_column(name, shape.columns), sql.Identifier(name))
                             for name in shape.fields)
    key = sql.Identifier(shape.key)
    geom, thin, size_filter = source, sql.SQL(""), sql.SQL("")
    if shape.grid is not None:
        grid = sql.Literal(shape.grid)  # a literal: DISTINCT ON must repeat ORDER BY's expression exactly
        thin = sql.SQL("DISTINCT ON (ST_SnapToGrid({}, {}))").format(source, grid)
        order = sql.SQL("ORDER BY ST_SnapToGrid({}, {}), t.{}").format(source, grid, key)
    else:
        if shape.simplify:
            geom = sql.SQL("CASE WHEN ST_NPoints({g}) > {n} THEN ST_Simplify({g}, %s, true) ELSE {g} END").format(
                g=source, n=sql.Literal(SIMPLIFY_POINTS))
        # in key order: a strong ETag promises the same bytes from every node, replica and restore,
        # whatever plan their statistics choose
        order = sql.SQL("ORDER BY t.{}").format(key)
        if shape.polygons:
            size_filter = sql.SQL(" AND (ST_XMax({g}) - ST_XMin({g}) >= %s OR ST_YMax({g}) - ST_YMin({g}) >= %s)"
                                  ).format(g=source)
    if not shape.stored and shape.tms_srid != shape.layer_srid:
        geom = sql.SQL("ST_Transform({}, {})").format(geom, sql.Literal(shape.tms_srid))
    return sql.SQL("""
        SELECT ST_AsMVT(q, {name}, {extent}, 'geom') FROM (
            SELECT {thin} ST_AsMVTGeom({geom}, {env}, {extent}, {buffer}, true) AS geom{attrs}
            FROM {table} t
            WHERE t.geom && ST_Expand({query_env}, %s){size_filter}
            {order} OFFSET 0) q
        WHERE q.geom IS NOT NULL""").format(
        name=sql.Literal(shape.layer_id), extent=sql.Literal(EXTENT), buffer=sql.Literal(BUFFER), thin=thin,
        geom=geom, env=env, attrs=attrs, table=sql.Identifier(*shape.table.split(".", 1)), query_env=query_env,
        size_filter=size_filter, order=order).as_string()


def render(layers: list[Layer], tms: morecantile.TileMatrixSet, tile: morecantile.Tile) -> bytes:
    """One tile holding each of ``layers`` as an MVT layer (an empty result is b""), from the versions
    of the request's snapshot: read from the tables the snapshot saw them in, and again from the
    tables the statement found them in if a switch moved them since (at most twice)."""
    if not layers:
        return b""
    ids = [layer.id for layer in layers]
    found = {i: snapshot().layers[i].storage for i in ids}
    with get_pool().connection() as conn:
        for _ in range(3):
            tables = found
            shapes, parameters = zip(*(layer_sql(layer, tables[layer.id], tms, tile) for layer in layers))
            try:
                located_now, data = conn.execute(_statement(shapes), [*version_parameters(ids),
                                                                      *(p for part in parameters for p in part)]).fetchone()
            except (errors.UndefinedColumn, errors.UndefinedTable):
                # a switch since the snapshot put a version without these fields in live.<layer> (a
                # rollback), or retired the table named: the statement fails before it can say where the
                # versions are now, so ask alone, and fail as before only if nothing moved
                found = located(ids, conn.execute(f"SELECT {versions_located(len(ids))}",
                                                  version_parameters(ids)).fetchone()[0])
                if found == tables:
                    raise
                continue
            found = located(ids, located_now)
            if found == tables:
                return bytes(data)
    raise DatabaseUnavailable("this node is switching to other versions of these layers; try again in a moment")
