"""A layer's page (``/collections/{id}`` when a browser asks): what it is, who supplies it, a
preview in its own style, its fields, downloads, quality and portal status, its versions with what
each changed, and how to use it from QGIS, ArcGIS Pro, GDAL, MapLibre and curl.

The caller must be able to read the layer (``features.live_layer``: the guard, as the API asks);
otherwise the answer is the API's own 401/404, so a page never tells a hidden layer from none.
Everything comes from the catalog, the live snapshot and three small indexed queries (versions with
their runs' diff and quality, and the portals' push records).
"""

import json
from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import dict_row
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from geocloud.catalog import Layer, get_catalog
from geocloud.db.pool import get_pool
from geocloud.serve.http import base_url
from geocloud.serve.ogcapi.features import live_layer
from geocloud.serve.ogcapi.links import DOWNLOADS, TERMS, TERMS_VERSION, TILEJSON_TMS
from geocloud.serve.ogcapi.styles import styles_dir
from geocloud.serve.portal import labels
from geocloud.serve.portal.i18n import page_language
from geocloud.serve.portal.render import portal_page, render
from geocloud.serve.portal.search import owner_agency

VERSIONS_SHOWN = 20
KEY_PLACEHOLDER = "YOUR_API_KEY"


@dataclass(frozen=True)
class Version:
    version: int
    state: str
    published_at: datetime
    feature_count: int | None
    added: int | None
    changed: int | None
    removed: int | None
    changed_area: list[float] | None   # CRS84 bbox of what changed


def _stored(layer_id: str) -> tuple[list[Version], dict, dict]:
    """The layer's versions (newest first), its live run's quality report and its push records."""
    with get_pool().connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT v.version, v.state, v.published_at, v.feature_count, r.diff -> v.layer AS diff, "
            "CASE WHEN v.state = 'live' THEN r.quality END AS quality FROM geocloud.layer_versions v "
            "LEFT JOIN geocloud.etl_runs r ON r.id = v.run_id WHERE v.layer = %s AND v.state <> 'retired' "
            "ORDER BY v.version DESC LIMIT %s", (layer_id, VERSIONS_SHOWN)).fetchall()
        pushes = cur.execute(
            "SELECT target, identifier, version, pushed_at, quality_mark FROM geocloud.publications WHERE layer = %s",
            (layer_id,)).fetchall()
    versions = [Version(r["version"], r["state"], r["published_at"], r["feature_count"],
                        *((r["diff"] or {}).get(k) for k in ("added", "changed", "removed", "bbox_crs84")))
                for r in rows]
    quality = next((r["quality"] for r in rows if r["quality"]), {}) or {}
    return versions, quality, {p["target"]: p for p in pushes}


def style_url(layer: Layer, base: str) -> str | None:
    """The layer's own MapLibre style, if it has one (agency layers may not: the preview then draws
    the tiles in a plain style of its own)."""
    if layer.style and (styles_dir() / f"{layer.style}.json").is_file():
        return f"{base}/styles/{layer.style}.json"
    return None


def tilejson_url(layer: Layer, base: str) -> str:
    """The layer's TileJSON (Web Mercator: the xyz scheme MapLibre and most web maps take)."""
    if layer.kind == "raster":
        return f"{base}/rasters/{layer.id}/{TILEJSON_TMS}/tilejson.json"
    return f"{base}/collections/{layer.id}/tiles/{TILEJSON_TMS}/tilejson.json"


def connections(layer: Layer, base: str) -> list[dict]:
    """The "use it" panel: (client, zh-TW and English label, the text to copy) for this layer, with
    a placeholder where the caller's key goes (the page never shows a key)."""
    key = f'"X-API-Key: {KEY_PLACEHOLDER}"'
    collection = f"{base}/collections/{layer.id}"

    def item(client: str, zh: str, en: str, text: str, zh_hint: str = "", en_hint: str = "") -> dict:
        return {"id": f"use-{client}", "client": client, "label": (zh, en), "text": text, "hint": (zh_hint, en_hint)}
    gdal_key = "" if layer.is_public else f" --config GDAL_HTTP_HEADERS {key}"
    tilejson = item("tilejson", "MapLibre 圖磚（TileJSON）", "MapLibre tiles (TileJSON)", tilejson_url(layer, base))
    if layer.kind == "raster":
        return [
            item("wmts", "WMTS 服務網址（QGIS、ArcGIS Pro）", "WMTS URL (QGIS, ArcGIS Pro)",
                 f"{base}/wmts/1.0.0/WMTSCapabilities.xml",
                 "QGIS：圖層 → 加入圖層 → 加入 WMS/WMTS 圖層；ArcGIS Pro：插入 → 連線 → 新增 WMTS 伺服器",
                 "QGIS: Layer → Add Layer → Add WMS/WMTS Layer; ArcGIS Pro: Insert → Connections → New WMTS Server"),
            tilejson,
            item("gdal", "GDAL（下載 GeoTIFF）", "GDAL (GeoTIFF download)",
                 f"gdal_translate -oo CACHE=NO OGCAPI:{collection} {layer.id}.tif{gdal_key}"),
            item("coverage", "涵蓋範圍 GeoTIFF（OGC API - Coverages）", "Coverage as GeoTIFF (OGC API - Coverages)",
                 f"{collection}/coverage"),
            item("curl", "curl（以您的 API 金鑰）", "curl (with your API key)",
                 f"curl -H {key} -o {layer.id}.tif \"{collection}/coverage\""),
        ]
    style = style_url(layer, base)
    return [
        item("qgis", "QGIS（OGC API - Features 連線網址）", "QGIS (OGC API - Features connection URL)", base,
             f"QGIS：圖層 → 加入圖層 → 加入 WFS / OGC API 圖徵圖層，新增連線，網址如上，再選「{layer.title.zh_TW}」",
             f"QGIS: Layer → Add Layer → Add WFS / OGC API – Features Layer, a new connection with the URL above, "
             f"then pick “{layer.title.en}”"),
        item("arcgis", "ArcGIS Pro（OGC API 伺服器）", "ArcGIS Pro (OGC API server)", base,
             "ArcGIS Pro：插入 → 連線 → 伺服器 → 新增 OGC API 伺服器",
             "ArcGIS Pro: Insert → Connections → Server → New OGC API Server"),
        item("gdal", "GDAL（ogr2ogr 轉成 GeoPackage）", "GDAL (ogr2ogr to a GeoPackage)",
             f"ogr2ogr -f GPKG {layer.id}.gpkg OAPIF:{base} {layer.id}{gdal_key}"),
        *([item("style", "MapLibre 樣式網址", "MapLibre style URL", style)] if style else []),
        tilejson,
        item("curl", "curl（以您的 API 金鑰）", "curl (with your API key)",
             f"curl -H {key} \"{collection}/items?limit=10\""),
    ]


def preview(layer: Layer, live, base: str, lang: str) -> str:
    """What the preview script needs, as one JSON attribute (the page's policy runs no inline script)."""
    return json.dumps({
        "id": layer.id, "kind": layer.kind, "geometry": layer.geometry, "style": style_url(layer, base),
        "tilejson": tilejson_url(layer, base),
        "bounds": live.extent, "minzoom": layer.zooms.min, "lang": lang, "title": layer.title.get(lang),
        "fields": {f.name: f.title.get(lang) for f in layer.fields}}, ensure_ascii=False)


@portal_page
async def page(request: Request) -> Response:
    layer, live = live_layer(request.path_params["collection_id"], kind=None)
    versions, quality, pushes = await run_in_threadpool(_stored, layer.id)
    catalog, base = get_catalog(), base_url(request)
    owner = owner_agency(catalog, layer)
    terms = "" if layer.is_public else f"&accept_terms={TERMS_VERSION}"
    downloads = [{"href": f"{base}/collections/{layer.id}/download?f={fmt}{terms}", "title": title, "ext": ext}
                 for fmt, (_, ext, title) in DOWNLOADS.items()] if layer.kind == "vector" else []
    return render(request, "layer.html", layer=layer, live=live, versions=versions, quality=quality, pushes=pushes,
                  owner=catalog.agencies.get(owner) if owner else None, labels=labels, downloads=downloads,
                  terms=(TERMS_VERSION, TERMS), uses=connections(layer, base),
                  preview=preview(layer, live, base, page_language(request)), key_placeholder=KEY_PLACEHOLDER)
