"""What every management action shares: the registry as it is now, doing the work on a thread as
the caller (recorded as the operator of the change or run), errors as problem details, the audit."""

import json

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from geocloud.access import Principal, audit
from geocloud.catalog import Catalog, get_catalog, registry
from geocloud.config import acting
from geocloud.db.pool import write_pool
from geocloud.errors import DatabaseError, GeocloudError
from geocloud.serve.manage.permission import problem

NO_STORE = {"Cache-Control": "no-store"}


def fresh_catalog() -> Catalog:
    """The catalog with the registry read now (another worker may have just changed it)."""
    registry.forget()
    return get_catalog()


def operator_of(principal: Principal) -> str:
    return f"{principal.name or principal.id}@{principal.agency}"


def as_principal(principal: Principal, work, *args):
    """``work(*args)`` recorded as done by ``principal``; a registry or ETL error as problem details."""
    token = acting.set(operator_of(principal))
    try:
        return work(*args)
    except DatabaseError:
        raise
    except GeocloudError as exc:
        return problem(exc)
    finally:
        acting.reset(token)


async def in_thread(principal: Principal, work, *args):
    return await run_in_threadpool(as_principal, principal, work, *args)


def audited(principal: Principal, action: str, layer_id: str, detail: dict) -> None:
    with write_pool().connection() as conn:
        audit.record(conn, action, operator_of(principal), principal.agency, layer_id, "manage", detail)


def json_answer(body: dict, status: int = 200, headers: dict | None = None) -> JSONResponse:
    """``body`` with dates and paths as text."""
    return JSONResponse(json.loads(json.dumps(body, default=str)), status_code=status,
                        headers={**NO_STORE, **(headers or {})})
