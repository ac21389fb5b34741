"""The map viewer (``/map``) and the styles (``/styles``), with tile URLs for the host reached.

MapLibre GL JS comes from the project's npm packages (``node_modules``), never from a CDN.
"""

import json
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from geocloud.catalog import get_catalog
from geocloud.config import get_settings
from geocloud.serve import guard
from geocloud.serve.http import base_url, not_found
from geocloud.serve.portal.render import render

STATIC = Path(__file__).parent / "static"
MAPBOX_STYLE = "application/vnd.mapbox.style+json"  # the media types OGC API - Styles names
QML = "application/vnd.qgis.qml"


def styles_dir() -> Path:
    return get_settings().project_dir / "styles"


def _fill(value, base: str):
    if isinstance(value, str):
        return value.replace("{base}", base)
    if isinstance(value, list):
        return [_fill(v, base) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, base) for k, v in value.items()}
    return value


def _check(name: str, suffix: str) -> Path:
    """A style file the caller may see: a layer's style is guarded like the layer itself, and a
    style that does not exist answers as a layer that does not exist (401 to an anonymous
    caller, 404 otherwise), so the answer never tells a restricted layer from an unknown name."""
    path = styles_dir() / f"{name}{suffix}"
    exists = name.replace("_", "").isalnum() and path.is_file()
    if name in get_catalog().layers or not exists:
        guard.layer_for(name, "styles")
    if not exists:
        raise not_found(f"style {name!r} not found; see /styles")
    return path


def _visible_only(style: dict) -> dict:
    """Drop the parts of a multi-layer style that name layers the caller may not read."""
    visible, catalog = guard.visible_layers(), get_catalog().layers
    style["layers"] = [x for x in style["layers"] if x.get("source-layer") not in catalog
                       or x["source-layer"] in visible]
    for name in list(style.get("sources", {})):
        if name in catalog and name not in visible:
            del style["sources"][name]
            style["layers"] = [x for x in style["layers"] if x.get("source") != name]
    return style


async def style(request: Request) -> Response:
    path = _check(request.path_params["name"], ".json")
    body = _visible_only(_fill(json.loads(path.read_text(encoding="utf-8")), base_url(request)))
    return JSONResponse(body, media_type=MAPBOX_STYLE, headers={"Cache-Control": "private, no-cache"})


async def qml(request: Request) -> Response:
    name = request.path_params["name"]
    return FileResponse(_check(name, ".qml"), media_type=QML, filename=f"{name}.qml")


async def styles(request: Request) -> JSONResponse:
    base, catalog, visible = base_url(request), get_catalog().layers, guard.visible_layers()
    names = sorted(p.stem for p in styles_dir().glob("*.json") if p.stem not in catalog or p.stem in visible)
    return JSONResponse({"styles": [
        {"id": n, "links": [{"rel": "stylesheet", "type": MAPBOX_STYLE,
                             "href": f"{base}/styles/{n}.json"}]
         + ([{"rel": "stylesheet", "type": QML, "href": f"{base}/styles/{n}.qml"}]
            if (styles_dir() / f"{n}.qml").exists() else [])} for n in names]})


async def viewer(request: Request) -> Response:
    if not request.url.path.endswith("/"):
        return RedirectResponse(request.url.path + "/")
    return render(request, "viewer.html")


def _maplibre() -> Path:
    return get_settings().project_dir / "node_modules" / "maplibre-gl" / "dist"


routes = [
    Route("/styles", styles, methods=["GET"]),
    Route("/styles/{name}.json", style, methods=["GET"]),
    Route("/styles/{name}.qml", qml, methods=["GET"]),
    Route("/map", viewer, methods=["GET"]),
    Route("/map/", viewer, methods=["GET"]),
    Mount("/map/static/maplibre-gl", app=StaticFiles(directory=_maplibre(), check_dir=False), name="maplibre"),
    Mount("/map/static", app=StaticFiles(directory=STATIC), name="viewer-static"),
]
