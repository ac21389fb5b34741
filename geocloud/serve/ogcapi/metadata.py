"""Metadata surfaces: each layer's TWSMP record, the service records, and the DCAT-AP feed.

All go through the guard: a layer's record is served only to a caller who may read the layer, the
service records list only what the caller may read, and the DCAT feed (for open-data portals that
harvest) lists public layers only, whoever asks.
"""

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from geocloud.catalog import get_catalog
from geocloud.db.pool import get_pool
from geocloud.publish import dcat, metadata, record_of
from geocloud.publish.metadata import SERVICES
from geocloud.serve import guard, openapi30
from geocloud.serve.http import HTTPError, base_url, not_found, not_modified, validators
from geocloud.serve.state import snapshot

XML = "application/xml; charset=utf-8"


def _publisher():
    publisher = get_catalog().publisher
    if publisher is None:
        raise not_found("this server has no publisher configured (agencies.yml), so it offers no metadata")
    return publisher


async def layer_record(request: Request) -> Response:
    layer = guard.layer_for(request.path_params["layer_id"], "metadata")
    live = snapshot().layers[layer.id]
    headers = validators(request, f"metadata:{layer.id}:{live.version}", live.published_at,
                         guard.cache_control([layer.id]))
    if (cached := not_modified(request, headers)) is not None:
        return cached
    _publisher()

    def build() -> bytes:
        with get_pool().connection() as conn:
            return record_of(conn, layer, base_url(request))[1]
    return Response(await run_in_threadpool(build), media_type=XML, headers=headers)


async def service_record(request: Request) -> Response:
    service = request.path_params["service"]
    if service not in metadata.SERVICES:
        raise HTTPError(404, "NotFound", f"unknown service {service!r}; use one of: {', '.join(metadata.SERVICES)}")
    kind = metadata.SERVICES[service][3]
    snap, catalog, visible = snapshot(), get_catalog(), guard.visible_layers()
    layers = [catalog.layers[i] for i in sorted(visible) if i in snap.layers and catalog.layers[i].kind == kind]
    stamp = max((snap.layers[layer.id].published_at for layer in layers), default=None)
    headers = validators(request, f"service:{service}:{snap.token}.{snap.catalog_version}:"
                                  f"{','.join(layer.id for layer in layers)}", stamp,
                         guard.cache_control([layer.id for layer in layers]))
    if (cached := not_modified(request, headers)) is not None:
        return cached
    if stamp is None:
        raise not_found(f"no {kind} layers are live for this caller")
    extents = [snap.layers[layer.id].extent for layer in layers if snap.layers[layer.id].extent]
    extent = (min(e[0] for e in extents), min(e[1] for e in extents), max(e[2] for e in extents),
              max(e[3] for e in extents)) if extents else None
    body = metadata.service_record(service, layers, _publisher(), base_url(request), stamp, extent)
    return Response(body, media_type=XML, headers=headers)


async def dcat_feed(request: Request) -> Response:
    snap, catalog = snapshot(), get_catalog()
    visible = guard.visible_layers()
    layers = [layer for layer in catalog.layers.values()
              if layer.is_public and layer.id in visible and layer.id in snap.layers]
    newest = max((snap.layers[layer.id].published_at for layer in layers), default=None)
    headers = validators(request, f"dcat:{snap.token}.{snap.catalog_version}", newest, "public, no-cache")
    if (cached := not_modified(request, headers)) is not None:
        return cached
    base = base_url(request)
    datasets = [dcat.dataset(layer, snap.layers[layer.id].version, snap.layers[layer.id].published_at,
                             snap.layers[layer.id].extent, base) for layer in layers]
    return JSONResponse(dcat.catalog(datasets, _publisher(), base), media_type="application/ld+json", headers=headers)


routes = [
    Route("/metadata/services/{service}.xml", service_record, methods=["GET"]),
    Route("/metadata/{layer_id}.xml", layer_record, methods=["GET"]),
    Route("/catalog/dcat.jsonld", dcat_feed, methods=["GET"]),
]


# -- the OpenAPI path items of these routes ----------------------------------------------------------
CATALOG = {
    "/metadata/services/{service}.xml": openapi30.get(
        "a service's metadata record", "Metadata", openapi30.ok("the record (ISO 19139)", {"type": "string"}, openapi30.XML),
        openapi30.path_parameter("service", "the service", {"type": "string", "enum": list(SERVICES)}),
        more={**openapi30.NOT_MODIFIED, **openapi30.NOT_FOUND}),
    "/metadata/{layerId}.xml": openapi30.get(
        "a layer's metadata record", "Metadata", openapi30.ok("the record (TWSMP, ISO 19139)", {"type": "string"}, openapi30.XML),
        openapi30.path_parameter("layerId", "a layer (vector or raster) the caller may read", {"type": "string", "example": "roads"}),
        more={**openapi30.NOT_MODIFIED, **openapi30.NOT_FOUND}),
    "/catalog/dcat.jsonld": openapi30.get("the public layers as a DCAT-AP catalogue", "Metadata",
                                 openapi30.ok("the catalogue", openapi30.OBJECT, "application/ld+json"),
                                 more={**openapi30.NOT_MODIFIED, **openapi30.NOT_FOUND}),
}

OPENAPI_PATHS = CATALOG
