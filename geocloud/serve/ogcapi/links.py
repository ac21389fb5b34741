"""What a vector collection offers besides its features, and the links its collection document
carries to each (tilesets, TileJSON, styles, downloads, metadata record, sortables), so that a
client follows links instead of knowing URL patterns; likewise for a raster collection (coverage,
map tilesets, TileJSON, WMTS, metadata record).

Kept apart from the routes that serve these (tiles, viewer, downloads, catalog) because the
collection document (pygeoapi_config.py) is built below them: the download formats and
terms live here, and downloads.py serves what this module advertises.
"""

from geocloud.catalog import I18n, Layer, get_catalog
from geocloud.serve.ogcapi.styles import MAPBOX_STYLE, QML, styles_dir

REL = "http://www.opengis.net/def/rel/ogc/1.0/"
SCHEMA_JSON = "application/schema+json"
METADATA_XML = "application/xml"
TERMS_VERSION = "tcg-restricted-2026-1"
TERMS = ("for the official duties of the caller's agency only; no redistribution; personal data is handled "
         "under the Personal Data Protection Act; the download is recorded")


def _t(zh_tw: str, en: str) -> I18n:
    return I18n(**{"zh-TW": zh_tw, "en": en})


# f= of /collections/{id}/download: (media type, file extension, title)
DOWNLOADS: dict[str, tuple[str, str, I18n]] = {
    "geojson": ("application/geo+json", "geojson", _t("GeoJSON（WGS 84）", "GeoJSON (WGS 84)")),
    "csv": ("text/csv; charset=utf-8", "csv", _t("CSV（UTF-8）", "CSV (UTF-8)")),
    "csv-bom": ("text/csv; charset=utf-8", "csv", _t("CSV（UTF-8 含 BOM，供 Excel 開啟）",
                                                     "CSV (UTF-8 with a BOM, for Excel)")),
    "shp": ("application/zip", "shp.zip", _t("Shapefile（ZIP，TWD97 EPSG:3826，附欄位名稱對照表）",
                                             "Shapefile (zip, TWD97 EPSG:3826, with the field-name table)")),
    "gpkg": ("application/geopackage+sqlite3", "gpkg", _t("GeoPackage（TWD97 EPSG:3826）",
                                                          "GeoPackage (TWD97 EPSG:3826)")),
    "kml": ("application/vnd.google-earth.kml+xml", "kml", _t("KML（WGS 84）", "KML (WGS 84)")),
}
TILEJSON_TMS = "WebMercatorQuad"  # TileJSON's xyz scheme is Web Mercator's


def _link(rel: str, media: str, title: I18n, href: str, **extra) -> dict:
    return {"rel": rel, "type": media, "title": {"zh-TW": title.zh_TW, "en": title.en}, "href": href, **extra}


def _styles(layer: Layer, base: str) -> list[dict]:
    """A stylesheet link per style file the layer has (a layer without a QML gets no QML link)."""
    if layer.style is None:
        return []
    kinds = [(".json", MAPBOX_STYLE, _t("MapLibre 樣式", "MapLibre style")),
             (".qml", QML, _t("QGIS 樣式（QML）", "QGIS style (QML)"))]
    return [_link("stylesheet", media, title, f"{base}/styles/{layer.style}{suffix}")
            for suffix, media, title in kinds if (styles_dir() / f"{layer.style}{suffix}").is_file()]


def _downloads(layer: Layer, base: str) -> list[dict]:
    """One ``enclosure`` per format. A layer that is not public is downloaded by accepting its terms
    of use: its links carry the acceptance and their titles say so. ``length: -1`` tells pygeoapi
    the size is unknown (the files are streamed) instead of having it send a HEAD request for each
    (one full export per format and per collection document)."""
    terms = "" if layer.is_public else f"&accept_terms={TERMS_VERSION}"
    out = []
    for fmt, (media, _, title) in DOWNLOADS.items():
        if not layer.is_public:
            title = _t(f"{title.zh_TW}：下載即同意使用條款 {TERMS_VERSION}",
                       f"{title.en}: downloading accepts the terms of use {TERMS_VERSION} ({TERMS})")
        out.append(_link("enclosure", media, title, f"{base}/collections/{layer.id}/download?f={fmt}{terms}",
                         length=-1))
    return out


def collection_links(layer: Layer, base: str) -> list[dict]:
    """Every link of a vector collection beyond pygeoapi's own (self, items, queryables), as
    absolute URLs under ``base``; only what exists for the layer."""
    prefix = f"{base}/collections/{layer.id}"
    links = [
        _link(REL + "tilesets-vector", "application/json", _t("向量圖磚集", "Vector tilesets"), f"{prefix}/tiles"),
        _link("describedby", "application/json", _t(f"TileJSON（{TILEJSON_TMS}）", f"TileJSON ({TILEJSON_TMS})"),
              f"{prefix}/tiles/{TILEJSON_TMS}/tilejson.json"),
        *_styles(layer, base),
        *_downloads(layer, base),
        _link(REL + "sortables", SCHEMA_JSON, _t("可排序欄位", "Sortable properties"), f"{prefix}/sortables"),
    ]
    return links + _record(layer, base)


def _record(layer: Layer, base: str) -> list[dict]:
    if get_catalog().publisher is None:  # the record names its publisher: none configured, no record
        return []
    return [_link("describedby", METADATA_XML, _t("詮釋資料（TWSMP）", "Metadata record (TWSMP)"),
                  f"{base}/metadata/{layer.id}.xml")]


def raster_links(layer: Layer, base: str) -> list[dict]:
    """Every link of a raster collection: its coverage (rasters/coverages.py, with the domain and
    range GDAL's OGCAPI driver reads), map tilesets (rasters/maptiles.py), TileJSON per tile matrix
    set, the WMTS capabilities and the metadata record."""
    prefix = f"{base}/collections/{layer.id}"
    return [
        _link(REL + "coverage", "image/tiff; application=geotiff", _t(
            "涵蓋範圍 GeoTIFF（bbox 或 subset，width/height 或 scale-size）",
            "Coverage as GeoTIFF (bbox or subset, width/height or scale-size)"), f"{prefix}/coverage"),
        _link(REL + "coverage-domainset", "application/json", _t("涵蓋範圍網格", "Coverage domain (grid)"),
              f"{prefix}/coverage/domainset"),
        _link(REL + "coverage-rangetype", "application/json", _t("涵蓋範圍波段", "Coverage range (bands)"),
              f"{prefix}/coverage/rangetype"),
        _link(REL + "tilesets-map", "application/json", _t("地圖圖磚集", "Map tilesets"), f"{prefix}/map/tiles"),
        *(_link("describedby", "application/json", _t(f"TileJSON（{tms}）", f"TileJSON ({tms})"),
                f"{base}/rasters/{layer.id}/{tms}/tilejson.json") for tms in ("WebMercatorQuad", "TWD97TM2Quad")),
        _link("related", "application/xml", _t(f"WMTS 1.0.0 服務能力文件（圖層 {layer.id}）",
                                               f"WMTS 1.0.0 capabilities (layer {layer.id})"),
              f"{base}/wmts/1.0.0/WMTSCapabilities.xml"),
        *_record(layer, base),
    ]
