"""The URLs a browser and an API client share: ``/``, ``/collections``, ``/collections/{id}`` and
its ``items``, ``items/{fid}``, ``queryables`` and ``schema``.

A browser that asks for a page (``render.wants_html``) gets the portal's page (home, layer, features);
every other client the OGC API document, from the OGC API handler itself. These routes come before
the OGC API's in the application, so the OGC API modules know nothing of the portal.
"""

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from geocloud.serve.ogcapi import features, landing
from geocloud.serve.portal import home, items, layer
from geocloud.serve.portal.render import wants_html

Endpoint = Callable[[Request], Awaitable[Response]]


def _page_or_document(page: Endpoint, document: Endpoint) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        return await (page(request) if wants_html(request) else document(request))
    return endpoint


routes = [
    Route("/", _page_or_document(home.page, landing.landing), methods=["GET"]),
    Route("/collections", _page_or_document(home.page, features.collections), methods=["GET"]),
    Route("/collections/{collection_id}", _page_or_document(layer.page, features.collection), methods=["GET"]),
    Route("/collections/{collection_id}/items", _page_or_document(items.items_page, features.items), methods=["GET"]),
    Route("/collections/{collection_id}/items/{item_id}", _page_or_document(items.item_page, features.item),
          methods=["GET"]),
    Route("/collections/{collection_id}/queryables", _page_or_document(items.properties_page, features.queryables),
          methods=["GET"]),
    Route("/collections/{collection_id}/schema", _page_or_document(items.properties_page, features.schema),
          methods=["GET"]),
]
