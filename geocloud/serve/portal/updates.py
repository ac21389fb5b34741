"""The admins' page of the update procedure (``/admin/updates``): every layer's update frequency,
last successful update, next due date and the last run's warnings, overdue first; what
``geocloud layers due`` prints, computed by the same function (``etl.schedule.due``). Only the GIS
office's admins see it: the public is told nothing is there (404), other principals 403."""

from datetime import datetime, timezone

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from geocloud.access.policy import is_admin
from geocloud.catalog import get_catalog
from geocloud.db.pool import get_pool
from geocloud.etl.schedule import due
from geocloud.serve import guard
from geocloud.serve.http import HTTPError
from geocloud.serve.portal import labels
from geocloud.serve.portal.render import render
from geocloud.serve.portal.signin import PERSONAL


def _schedule(catalog) -> list:
    with get_pool().connection() as conn:
        return due(conn, catalog, datetime.now(timezone.utc))


async def page(request: Request) -> Response:
    principal, catalog = guard.current.get(), get_catalog()
    if principal.anonymous:
        raise HTTPError(404, "NotFound", "no such page")
    if not is_admin(principal, catalog) or principal.layers is not None:  # it lists every layer (as the audit)
        raise HTTPError(403, "Forbidden", "the update procedure is the GIS office admins' page (a credential "
                                          "scoped to some layers does not read it)")
    rows = await run_in_threadpool(_schedule, catalog)
    return render(request, "updates.html", headers=PERSONAL, rows=rows, labels=labels, catalog=catalog,
                  overdue=sum(r.overdue for r in rows))


routes = [Route("/admin/updates", page, methods=["GET"])]

OPENAPI_PATHS = {"/admin/updates": {"get": {
    "summary": "page (GIS office admins): every layer's update frequency, last successful update, next due date "
               "and the last run's warnings, overdue first", "tags": ["Portal"], "parameters": [],
    "responses": {"200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}},
                  "403": {"$ref": "#/components/responses/Forbidden"},
                  "404": {"$ref": "#/components/responses/NotFound"}}}}}
