"""WMTS 1.0.0 capabilities (RESTful) for the raster layers, as TGOS registers WMTS services.

Tile requests go to the titiler tile endpoints of ``geocloud.serve.rasters.tiler``; the capabilities
describe both tile matrix sets (WebMercatorQuad and TWD97TM2Quad) from morecantile.
"""

from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from geocloud.catalog import get_catalog
from geocloud.serve import guard, openapi30
from geocloud.serve.http import base_url
from geocloud.serve.state import snapshot
from geocloud.serve.tiles.tms import SERVED

FORMATS = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}


def _matrix_set(tms) -> str:
    matrices = []
    for m in tms.tileMatrices:
        x, y = m.pointOfOrigin  # both served CRSs are easting, northing
        origin = f"{x} {y}"
        matrices.append(f"""<TileMatrix><ows:Identifier>{m.id}</ows:Identifier>
<ScaleDenominator>{m.scaleDenominator}</ScaleDenominator><TopLeftCorner>{origin}</TopLeftCorner>
<TileWidth>{m.tileWidth}</TileWidth><TileHeight>{m.tileHeight}</TileHeight>
<MatrixWidth>{m.matrixWidth}</MatrixWidth><MatrixHeight>{m.matrixHeight}</MatrixHeight></TileMatrix>""")
    return (f"<TileMatrixSet><ows:Identifier>{tms.id}</ows:Identifier>"
            f"<ows:SupportedCRS>urn:ogc:def:crs:EPSG::{tms.rasterio_crs.to_epsg()}</ows:SupportedCRS>"
            + "".join(matrices) + "</TileMatrixSet>")


async def capabilities(request: Request) -> Response:
    base = base_url(request)
    catalog, live, visible = get_catalog(), snapshot().layers, guard.visible_layers()
    layers = []
    for layer in catalog.layers.values():
        if layer.kind != "raster" or layer.id not in live or layer.id not in visible:
            continue
        box = live[layer.id].extent or (120.45, 23.99, 121.46, 24.45)
        formats = "".join(f"<Format>{m}</Format>" for m in FORMATS.values())
        links = "".join(f"<TileMatrixSetLink><TileMatrixSet>{t}</TileMatrixSet></TileMatrixSetLink>" for t in SERVED)
        urls = "".join(
            f'<ResourceURL format="{m}" resourceType="tile" template="{escape(base)}/rasters/{layer.id}/tiles/'
            f'{{TileMatrixSet}}/{{TileMatrix}}/{{TileCol}}/{{TileRow}}.{ext}"/>' for ext, m in FORMATS.items())
        layers.append(f"""<Layer><ows:Title>{escape(layer.title.zh_TW)} {escape(layer.title.en)}</ows:Title>
<ows:Abstract>{escape(layer.description.zh_TW)}</ows:Abstract>
<ows:WGS84BoundingBox><ows:LowerCorner>{box[0]} {box[1]}</ows:LowerCorner><ows:UpperCorner>{box[2]} {box[3]}</ows:UpperCorner></ows:WGS84BoundingBox>
<ows:Identifier>{layer.id}</ows:Identifier><Style isDefault="true"><ows:Identifier>default</ows:Identifier></Style>
{formats}{links}{urls}</Layer>""")
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<Capabilities xmlns="http://www.opengis.net/wmts/1.0" xmlns:ows="http://www.opengis.net/ows/1.1"
 xmlns:xlink="http://www.w3.org/1999/xlink" version="1.0.0">
<ows:ServiceIdentification><ows:Title>臺中市圖資雲 WMTS</ows:Title><ows:ServiceType>OGC WMTS</ows:ServiceType>
<ows:ServiceTypeVersion>1.0.0</ows:ServiceTypeVersion></ows:ServiceIdentification>
<Contents>{"".join(layers)}{"".join(_matrix_set(t) for t in SERVED.values())}</Contents>
<ServiceMetadataURL xlink:href="{escape(base)}/wmts/1.0.0/WMTSCapabilities.xml"/>
</Capabilities>"""
    return Response(xml, media_type="application/xml",
                    headers={"Cache-Control": guard.cache_control(visible & {x.id for x in catalog.layers.values()})})


routes = [Route("/wmts/1.0.0/WMTSCapabilities.xml", capabilities, methods=["GET"])]


# -- the OpenAPI path items of these routes ----------------------------------------------------------
WMTS = {
    "/wmts/1.0.0/WMTSCapabilities.xml": openapi30.get("WMTS capabilities of the raster layers the caller may read",
                                             "WMTS", openapi30.ok("WMTS capabilities", {"type": "string"}, openapi30.XML)),
}

OPENAPI_PATHS = WMTS
