"""``GET /manage/audit``: the audit trail over HTTP, as ``geocloud audit`` prints it. A GIS office admin
reads all of it; an editor reads the records on the layers they manage (their agency's: its
management actions and the reads of its non-public layers by whoever read them); anyone else, 403."""

import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from geocloud.access import audit
from geocloud.access.policy import is_admin
from geocloud.catalog.models import LAYER_ID
from geocloud.db.pool import write_pool
from geocloud.errors import InputError
from geocloud.serve.guard import current, unauthorized
from geocloud.serve.http import HTTPError
from geocloud.serve.manage.acting import fresh_catalog, json_answer
from geocloud.serve.manage.permission import managed, may_manage_some

LIMIT = 100  # records by default


def _bad(name: str, value: str, expected: str) -> HTTPError:
    return HTTPError(400, "InvalidParameterValue", f"{name}: {value[:80]!r} is not {expected}")


def _filters(request: Request) -> dict:
    """The query's filters, each checked; a bad one is a 400 naming it."""
    q = request.query_params
    layer, actor, since, limit = q.get("layer"), q.get("actor"), q.get("since"), q.get("limit", str(LIMIT))
    if layer is not None and not re.fullmatch(LAYER_ID, layer):
        raise _bad("layer", layer, "a layer id (lower-case letters, digits and _)")
    if actor is not None and not (0 < len(actor) <= 200 and actor.isprintable()):
        raise _bad("actor", actor, "a principal as the audit records it (name@agency) or an agency code")
    if not (limit.isdigit() and 0 < int(limit) <= audit.MAX_READ):
        raise _bad("limit", limit, f"a number of records from 1 to {audit.MAX_READ}")
    try:
        start = audit.parse_since(since, "since") if since is not None else None
    except InputError as exc:
        raise HTTPError(400, "InvalidParameterValue", f"{exc.what}; {exc.fix}") from None
    return {"layer": layer, "actor": actor, "since": start, "limit": int(limit)}


def _records(principal, filters: dict) -> list[dict]:
    catalog = fresh_catalog()
    scope = None  # every record, for an admin of the GIS office
    if not (is_admin(principal, catalog) and principal.layers is None):
        scope = managed(principal, catalog)
    with write_pool().connection() as conn:  # the primary: an action's record is listed as soon as it is done
        return audit.read(conn, layers=scope, **filters)


async def get_audit(request: Request):
    principal = current.get()
    if principal.anonymous:
        raise unauthorized("reading the audit needs a credential (an API key, token or JWT of an agency)")
    if not may_manage_some(principal):
        raise HTTPError(403, "Forbidden", f"role {principal.role!r} does not read the audit: the GIS office's "
                                          "admins read all of it, an agency's editors the records on its layers")
    filters = _filters(request)
    return json_answer({"records": await run_in_threadpool(_records, principal, filters)})


routes = [Route("/manage/audit", get_audit, methods=["GET"])]
