"""The API reference a browser gets from ``/openapi`` (``f=html``, ``ui=swagger`` or ``ui=redoc``,
or a browser's ``Accept``): Swagger UI from the project's npm packages (``swagger-ui-dist``), on a
page of the portal's with no inline script, reading the OpenAPI document from ``/openapi?f=json``.
pygeoapi's pages loaded Swagger UI and ReDoc from CDNs; geocloud serves one reference, Swagger UI,
for both ``ui`` values. Every other client gets the OpenAPI document from the OGC API handler."""

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from geocloud.config import get_settings
from geocloud.serve import openapi30
from geocloud.serve.http import base_url
from geocloud.serve.ogcapi import features
from geocloud.serve.ogcapi.params import choice
from geocloud.serve.portal.render import render, wants_html

SWAGGER_UI = "/portal/swagger-ui"


async def openapi(request: Request) -> Response:
    ui = request.query_params.get("ui")
    choice("ui", ui, ("swagger", "redoc"))
    f = request.query_params.get("f")
    if f not in (None, "html") or (ui is None and not wants_html(request)):
        return await features.openapi(request)
    return render(request, "apidocs.html", document=f"{base_url(request)}/openapi?f=json",
                  swagger_ui=f"{base_url(request)}{SWAGGER_UI}")


def _swagger_ui():
    return get_settings().project_dir / "node_modules" / "swagger-ui-dist"


routes = [
    Route("/openapi", openapi, methods=["GET"]),
    Mount(SWAGGER_UI, app=StaticFiles(directory=_swagger_ui(), check_dir=False), name="swagger-ui"),
]

OPENAPI_PATHS = {
    f"{SWAGGER_UI}/{{path}}": openapi30.get("Swagger UI (from the project's npm packages) of the API reference page",
                                            "Portal", openapi30.FILE, openapi30.FILE_PATH, more=openapi30.NOT_FOUND),
}
