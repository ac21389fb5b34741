"""The map viewer (``/map``): MapLibre GL JS from the project's npm packages (``node_modules``),
never from a CDN, showing the base map and the layers the caller may read."""

from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from geocloud.config import get_settings
from geocloud.serve import openapi30
from geocloud.serve.portal.render import render

STATIC = Path(__file__).parent / "static"


async def viewer(request: Request) -> Response:
    if not request.url.path.endswith("/"):
        return RedirectResponse(request.url.path + "/")
    return render(request, "viewer.html")


def _maplibre() -> Path:
    return get_settings().project_dir / "node_modules" / "maplibre-gl" / "dist"


routes = [
    Route("/map", viewer, methods=["GET"]),
    Route("/map/", viewer, methods=["GET"]),
    Mount("/map/static/maplibre-gl", app=StaticFiles(directory=_maplibre(), check_dir=False), name="maplibre"),
    Mount("/map/static", app=StaticFiles(directory=STATIC), name="viewer-static"),
]

OPENAPI_PATHS = {
    "/map": openapi30.get("the map viewer (redirects to /map/)", "Viewer", openapi30.ok("the viewer", {"type": "string"}, "text/html"),
                 more={"307": {"description": "to /map/"}}),
    "/map/": openapi30.get("the map viewer", "Viewer", openapi30.ok("the viewer", {"type": "string"}, "text/html")),
    "/map/static/{path}": openapi30.get("the viewer's files", "Viewer", openapi30.FILE, openapi30.FILE_PATH, more=openapi30.NOT_FOUND),
    "/map/static/maplibre-gl/{path}": openapi30.get("MapLibre GL JS (from the project's npm packages)", "Viewer", openapi30.FILE,
                                           openapi30.FILE_PATH, more=openapi30.NOT_FOUND),
}
