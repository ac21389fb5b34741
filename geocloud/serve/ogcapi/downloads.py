"""Downloads of a vector layer, whole or filtered (bbox, CQL2), streamed in bounded memory.

``GET /collections/{id}/download?f=geojson|csv|csv-bom|shp|gpkg|kml[&bbox=…][&filter=…]``

GeoJSON and CSV stream straight from a server-side cursor. Shapefile, GeoPackage and KML are
written batch by batch into a temporary file by GDAL (pyogrio), then streamed and deleted. File
names carry the layer and its live version, e.g. ``buildings-v3.gpkg``.

A .dbf field name holds at most 10 characters: the Shapefile's fields get GDAL's own short names
(``plan_area_name`` -> ``plan_are_1``), chosen here rather than laundered by GDAL, and the zip
carries ``<layer>.fields.csv`` mapping each short name back to the field and its zh-TW and English
titles.
"""

import csv
import io
import shutil
import tempfile
import zipfile
from pathlib import Path

import pyarrow as pa
from psycopg import sql
from pyogrio import write_arrow
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route

from geocloud.catalog import Layer
from geocloud.db.pool import get_pool
from geocloud.serve import guard, openapi30
from geocloud.serve.http import bad_parameter, not_modified
from geocloud.serve.ogcapi import params
from geocloud.serve.ogcapi.features import layer_validators, live_layer
from geocloud.serve.ogcapi.links import DOWNLOADS, TERMS, TERMS_VERSION
from geocloud.serve.ogcapi.provider import column, where
from geocloud.serve.state import tables

BATCH = 5_000
FORMATS = {fmt: (media, ext) for fmt, (media, ext, _) in DOWNLOADS.items()}
OGR = {"shp": ("ESRI Shapefile", 3826), "gpkg": ("GPKG", 3826), "kml": ("KML", 4326)}
ARROW = {"text": pa.string(), "integer": pa.int32(), "bigint": pa.int64(), "double": pa.float64(),
         "boolean": pa.bool_(), "date": pa.date32(), "timestamp": pa.timestamp("us", tz="UTC")}


def _query(layer: Layer, request: Request, select: sql.Composable):
    """The download's query, as a function of the table holding the request's version, and its
    arguments: the rows, like the file name and the ETag, belong to the version the snapshot names."""
    extra = params.items(request.query_params, layer)
    clauses, args = where(layer, None, (), None, extra)
    cond = sql.SQL("WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")

    def on(table: sql.Composable) -> sql.Composable:
        return sql.SQL("SELECT {} FROM {} t {} ORDER BY t.{}").format(select, table, cond, sql.Identifier(layer.key))
    return on, args


def _rows(layer: Layer, query, args: list):
    """Rows from a server-side cursor, BATCH at a time, holding one pooled connection."""
    with get_pool().connection() as conn:
        table = tables(conn, [layer.id])[layer.id]
        with conn.transaction(), conn.cursor(name="geocloud_download") as cur:
            cur.itersize = BATCH
            cur.execute(query(table), args)
            while rows := cur.fetchmany(BATCH):
                yield rows


def _geojson(layer: Layer, request: Request):
    props = sql.SQL(", ").join(sql.SQL("{}, {}").format(sql.Literal(f.name), column(layer, f.name))
                               for f in layer.fields)
    select = sql.SQL("json_build_object('type', 'Feature', 'id', t.{}, 'geometry', "
                     "ST_AsGeoJSON(ST_Transform(t.geom, 4326), 8)::json, 'properties', json_build_object({}))::text"
                     ).format(sql.Identifier(layer.key), props)
    query, args = _query(layer, request, select)

    def body():
        yield '{"type": "FeatureCollection", "features": [\n'
        first = True
        for rows in _rows(layer, query, args):
            chunk = ",\n".join(r[0] for r in rows)
            yield chunk if first else ",\n" + chunk
            first = False
        yield "\n]}\n"
    return body()


def _csv(layer: Layer, request: Request, bom: bool):
    cols = [column(layer, f.name) for f in layer.fields]
    if layer.geometry == "Point":
        cols += [sql.SQL("ST_X(ST_Transform(t.geom, 4326))"), sql.SQL("ST_Y(ST_Transform(t.geom, 4326))"),
                 sql.SQL("ST_X(t.geom)"), sql.SQL("ST_Y(t.geom)")]
    else:
        cols.append(sql.SQL("ST_AsText(t.geom, 3)"))
    query, args = _query(layer, request, sql.SQL(", ").join(cols))

    def body():
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\r\n")
        out.writerow(layer.csv_columns())
        yield ("\ufeff" if bom else "") + buf.getvalue()
        for rows in _rows(layer, query, args):
            buf.seek(0)
            buf.truncate()
            out.writerows(rows)
            yield buf.getvalue()
    return body()


def short_names(layer: Layer) -> dict[str, str]:
    """Each field's .dbf name, as GDAL's laundering would make it (the first 10 characters; on a
    clash the first 8 and ``_1``, ``_2``…), so the names are the ones users already know."""
    taken: set[str] = set()
    out = {}
    for f in layer.fields:
        name, n = f.name[:10], 0
        while name in taken:
            n += 1
            name = f.name[:10 - len(f"_{n}")] + f"_{n}"
        taken.add(name)
        out[f.name] = name
    return out


FIELDS_CSV = ["short_name", "field", "title_zh-TW", "title_en", "type"]


def _field_table(layer: Layer, shorts: dict[str, str]) -> str:
    """The short name -> field table shipped in the zip: UTF-8 with a BOM (Excel shows the Chinese
    titles), one row per .dbf field, in the .dbf's order."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\r\n")
    out.writerow(FIELDS_CSV)
    out.writerows([shorts[f.name], f.name, f.title.zh_TW, f.title.en, f.type] for f in layer.fields)
    return "\ufeff" + buf.getvalue()


def _ogr_file(layer: Layer, request: Request, fmt: str, folder: Path) -> Path:
    driver, srid = OGR[fmt]
    geom = sql.SQL("ST_AsBinary(t.geom)") if srid == layer.srid else \
        sql.SQL("ST_AsBinary(ST_Transform(t.geom, {}))").format(sql.Literal(srid))
    cols = [column(layer, f.name) for f in layer.fields] + [geom]
    query, args = _query(layer, request, sql.SQL(", ").join(cols))
    target = folder / f"{layer.id}.{'shp' if fmt == 'shp' else fmt}"
    shorts = short_names(layer) if fmt == "shp" else {f.name: f.name for f in layer.fields}
    names = [shorts[f.name] for f in layer.fields]
    types = [ARROW[f.type] for f in layer.fields]  # typed, so a batch where a field is all empty stays typed
    written = False
    options = {"encoding": "UTF-8"} if fmt == "shp" else {}
    for rows in _rows(layer, query, args):
        columns = list(zip(*rows))
        table = pa.table({**{n: pa.array(columns[i], types[i]) for i, n in enumerate(names)},
                          "geometry": pa.array(columns[-1], pa.binary())})
        write_arrow(table, target, driver=driver, layer=layer.id, geometry_type=layer.geometry,
                    crs=f"EPSG:{srid}", geometry_name="geometry", append=written, **options)
        written = True
    if not written:  # an empty selection still gives a valid, empty file
        table = pa.table({**{n: pa.array([], t) for n, t in zip(names, types)}, "geometry": pa.array([], pa.binary())})
        write_arrow(table, target, driver=driver, layer=layer.id, geometry_type=layer.geometry,
                    crs=f"EPSG:{srid}", geometry_name="geometry", **options)
    if fmt != "shp":
        return target
    archive = folder / f"{layer.id}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for part in sorted(folder.glob(f"{layer.id}.*")):
            if part.suffix in (".shp", ".shx", ".dbf", ".prj", ".cpg"):
                zf.write(part, part.name)
        zf.writestr(f"{layer.id}.fields.csv", _field_table(layer, shorts))
    return archive


async def download(request: Request) -> Response:
    cid = request.path_params["collection_id"]
    layer, live = live_layer(cid, "download")
    fmt = request.query_params.get("f", "geojson")
    if fmt not in FORMATS:
        raise bad_parameter("f", f"unknown download format {fmt!r}; use one of {', '.join(FORMATS)}")
    params.items(request.query_params, layer)  # validate before anything streams
    if not layer.is_public:
        accepted = request.query_params.get("accept_terms")
        if accepted != TERMS_VERSION:
            raise bad_parameter("accept_terms", f"{layer.id!r} is not public: downloading it means accepting "
                                                f"the terms of use {TERMS_VERSION!r} ({TERMS}); add accept_terms={TERMS_VERSION}")
        guard.note(layer.id, {"terms": TERMS_VERSION, "format": fmt})
    media, ext = FORMATS[fmt]
    hdrs = layer_validators(request, layer, live)
    if (cached := not_modified(request, hdrs)) is not None:
        return cached
    name = f"{layer.id}-v{live.version}{'-bom' if fmt == 'csv-bom' else ''}.{ext}"
    hdrs["Content-Disposition"] = f'attachment; filename="{name}"'
    if fmt == "geojson":
        return StreamingResponse(_geojson(layer, request), media_type=media, headers=hdrs)
    if fmt in ("csv", "csv-bom"):
        return StreamingResponse(_csv(layer, request, fmt == "csv-bom"), media_type=media, headers=hdrs)
    folder = Path(tempfile.mkdtemp(prefix="geocloud-download-"))
    try:
        path = await run_in_threadpool(_ogr_file, layer, request, fmt, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(path, media_type=media, headers=hdrs,
                        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True))


routes = [Route("/collections/{collection_id}/download", download, methods=["GET"])]


# -- the OpenAPI path items of these routes ----------------------------------------------------------
DOWNLOAD_MEDIA = sorted({media.split(";")[0] for media, _ in FORMATS.values()})
OPENAPI_PATHS = {
    "/collections/{collectionId}/download": openapi30.get(
        "download a collection, whole or filtered", "Downloads",
        {"description": "the file (named after the layer and its live version)",
         "content": {m: {"schema": openapi30.OBJECT if m.endswith("json") else openapi30.BINARY} for m in DOWNLOAD_MEDIA}},
        openapi30.COLLECTION,
        openapi30.query_parameter("f", "the file format (geojson by default)", {"type": "string", "enum": list(FORMATS)}),
        openapi30.query_parameter("accept_terms", "for a collection that is not public: the terms of use accepted", {"type": "string"}),
        openapi30.ref("parameters", "bbox"), openapi30.ref("parameters", "bbox-crs"), openapi30.ref("parameters", "filter"),
        openapi30.ref("parameters", "filter-lang"), openapi30.ref("parameters", "filter-crs"),
        more={**openapi30.NOT_MODIFIED, **openapi30.NOT_FOUND}),
}
