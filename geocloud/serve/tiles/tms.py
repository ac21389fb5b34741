"""The tile matrix sets geocloud serves: WebMercatorQuad and a TWD97 (EPSG:3826) quadtree.

TWD97TM2Quad covers Taiwan's main island in EPSG:3826 metres with a 420 km square at zoom 0, so
tiles line up with the city's 1/1000 maps; it is registered with morecantile, which titiler uses
for raster tiles too.
"""

from functools import lru_cache

import morecantile
from pyproj import CRS

TWD97 = morecantile.TileMatrixSet.custom(
    [94_000.0, 2_400_000.0, 514_000.0, 2_820_000.0], CRS.from_epsg(3826), id="TWD97TM2Quad",
    title="TWD97 / TM2 zone 121 (EPSG:3826) quadtree", maxzoom=22)
TMS = morecantile.tms.register({"TWD97TM2Quad": TWD97})
SERVED = {"WebMercatorQuad": TMS.get("WebMercatorQuad"), "TWD97TM2Quad": TWD97}


def srid(tms: morecantile.TileMatrixSet) -> int:
    """The EPSG code of ``tms``, looked up once per matrix set (pyproj's look-up is slow enough to
    matter on every tile)."""
    if (code := _EPSG.get(tms.id)) is None:
        code = _EPSG[tms.id] = tms.rasterio_crs.to_epsg()
    return code


_EPSG: dict[str, int] = {}


def zoom_range(zooms, tms: morecantile.TileMatrixSet) -> tuple[int, int]:
    """A catalog zoom range (WebMercatorQuad levels) as the levels of ``tms`` with the same ground
    resolution in Taichung (TWD97TM2Quad level 9 is about WebMercatorQuad level 15 there)."""
    return _level(tms.id, zooms.min), _level(tms.id, zooms.max)


@lru_cache(maxsize=256)
def _level(tms_id: str, web_zoom: int) -> int:
    if tms_id == "WebMercatorQuad":
        return web_zoom
    tms, web = SERVED[tms_id], SERVED["WebMercatorQuad"]
    ground = 0.9135  # cos(24°): Web Mercator metres to ground metres at Taichung
    return max(tms.minzoom, min(tms.maxzoom, tms.zoom_for_res(web.matrix(web_zoom).cellSize * ground)))


def tile_number(text: str) -> bool:
    """Is a path's zoom, column or row a tile number: ASCII digits (``str.isdigit`` also takes '²'),
    few enough that ``int`` takes them and any matrix could hold them."""
    return text.isascii() and text.isdigit() and len(text) <= 9
