"""The stable URLs a layer is distributed at, and how each is described to portals.

One list per layer, used by TWSMP records, the DCAT feed, data.gov.tw payloads and the quality
check, so that what a portal is told always matches what the server answers.
"""

from dataclasses import dataclass
from urllib.parse import quote

from geocloud.catalog import Layer

STRUCTURED = {"CSV", "GEOJSON", "SHP", "KML", "JSON", "XML"}


@dataclass(frozen=True)
class Distribution:
    key: str             # stable per layer: the 3-digit resource number on data.gov.tw follows this order
    format: str          # data.gov.tw format value
    url: str
    media_type: str
    title: str           # zh-TW
    title_en: str
    download: bool       # a file (downloadURL), not an API or service endpoint (accessURL)
    iso_name: str        # TWSMP distributionFormat name and version
    iso_version: str


def distributions(layer: Layer, base: str) -> list[Distribution]:
    base = base.rstrip("/")
    lid = quote(layer.id)
    if layer.kind == "raster":
        return [
            Distribution("wmts", "WMTS", f"{base}/wmts/1.0.0/WMTSCapabilities.xml", "application/xml",
                         "WMTS 圖磚服務", "WMTS tile service", False, "電子資料_WMTS", "OGC WMTS 1.0.0"),
            Distribution("tilejson", "API", f"{base}/rasters/{lid}/WebMercatorQuad/tilejson.json", "application/json",
                         "圖磚 TileJSON", "TileJSON of the raster tiles", False, "電子資料_PNG", "PNG/JPEG/WebP tiles"),
        ]
    dl = f"{base}/collections/{lid}/download?f="
    return [
        Distribution("csv", "CSV", dl + "csv", "text/csv", "CSV 下載", "CSV download", True, "電子資料_CSV", "RFC 4180, UTF-8"),
        Distribution("geojson", "GEOJSON", dl + "geojson", "application/geo+json", "GeoJSON 下載", "GeoJSON download",
                     True, "電子資料_GeoJSON", "RFC 7946"),
        Distribution("shp", "SHP", dl + "shp", "application/zip", "Shapefile 下載（UTF-8）", "Shapefile download (UTF-8)",
                     True, "電子資料_SHP", "SHP"),
        Distribution("kml", "KML", dl + "kml", "application/vnd.google-earth.kml+xml", "KML 下載", "KML download", True,
                     "電子資料_KML", "KML 2.2"),
        Distribution("api", "API", f"{base}/collections/{lid}/items", "application/geo+json",
                     "OGC API - Features 服務", "OGC API - Features", False, "OGC API - Features", "1.0"),
    ]


def field_description(layer: Layer) -> str:
    """主要欄位說明: the CSV's columns, in order, each with its zh-TW title."""
    titles = {f.name: f.title.zh_TW for f in layer.fields}
    titles.update({"lon": "經度（WGS84）", "lat": "緯度（WGS84）", "x_twd97": "TWD97 橫座標", "y_twd97": "TWD97 縱座標",
                   "wkt": "幾何（WKT，TWD97）"})
    return "、".join(f"{c}({titles[c]})" for c in layer.csv_columns())


def described_columns(description: str) -> list[str]:
    """The column names a field description lists, in order (the inverse of ``field_description``)."""
    return [part.split("(", 1)[0].strip() for part in description.split("、") if part.strip()]
