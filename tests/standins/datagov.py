"""A stand-in for data.gov.tw's agency dataset API that enforces its documented contract.

``POST /api/v1/rest/dataset`` creates, ``PUT /api/v1/rest/dataset/{identifier}`` updates and
``DELETE`` removes; the agency's key goes in the ``Authorization`` header and may only touch its
own agency's identifiers. Answers are ``{"success": true, "result": {...}}`` or
``{"success": false, "error": {...}}`` (see ../shared/reference/taiwan.md). Tests can make it fail:
``fail_next`` holds HTTP statuses to answer with before working again, ``slow_next`` makes that
many requests answer only after ``delay`` seconds (the change is still made, as on a real slow
server), ``reject_field`` refuses a field.
"""

import re
import threading
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

REQUIRED = ["identifier", "categoryCode", "title", "description", "fieldDescription", "type", "publisher",
            "accrualPeriodicity", "license", "licenseURL", "cost", "keyword", "organization",
            "organizationContactName", "organizationContactPhone", "organizationContactEmail",
            "publisherContactName", "publisherContactPhone", "publisherContactEmail", "publisherOID", "distribution"]
DIST_REQUIRED = ["resourceID", "resourceDescription", "format", "characterSetCode"]
FORMATS = {"CSV", "GEOJSON", "SHP", "KML", "JSON", "XML", "WMS", "WMTS", "API", "ZIP", "PDF", "ODS", "XLSX"}
TYPES = {"rawData", "tools", "services", "apps"}
PERIODICITY = {"每日", "每週", "每月", "每季", "每半年", "每年", "不定期", "即時"}
LICENSES = {"政府資料開放授權條款－第1版"}
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    error = {"code": status, "message": message, **({"field": field} if field else {})}
    return JSONResponse({"success": False, "error": error}, status_code=status)


class DataGov:
    def __init__(self, api_key: str, org_code: str):
        self.api_key, self.org_code = api_key, org_code
        self.datasets: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.fail_next: list[int] = []
        self.slow_next = 0
        self.delay = 3.0
        self.reject_field: str | None = None
        self.app = Starlette(routes=[
            Route("/api/v1/rest/dataset", self.create, methods=["POST"]),
            Route("/api/v1/rest/dataset/{identifier}", self.update, methods=["PUT"]),
            Route("/api/v1/rest/dataset/{identifier}", self.delete, methods=["DELETE"]),
        ])

    def _invalid(self, body) -> JSONResponse | None:
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object")
        for name in REQUIRED:
            if body.get(name) in (None, "", []):
                return _error(400, f"required field missing: {name}", name)
        ident = body["identifier"]
        if not re.fullmatch(r"[0-9A-Z]{10}-\d{6}", ident):
            return _error(400, f"identifier {ident!r} must be <publisherOrgCode>-<6 digits>", "identifier")
        if not ident.startswith(self.org_code + "-"):
            return _error(403, f"identifier {ident!r} does not belong to agency {self.org_code}", "identifier")
        checks = [("type", TYPES), ("accrualPeriodicity", PERIODICITY), ("license", LICENSES), ("cost", {"免費", "付費"})]
        for name, allowed in checks:
            if body[name] not in allowed:
                return _error(400, f"{name} {body[name]!r} is not one of {sorted(allowed)}", name)
        if not isinstance(body["keyword"], list):
            return _error(400, "keyword must be a list", "keyword")
        for name in ("organizationContactEmail", "publisherContactEmail"):
            if not EMAIL.match(body[name]):
                return _error(400, f"{name} is not an e-mail address", name)
        for i, dist in enumerate(body["distribution"]):
            for name in DIST_REQUIRED:
                if not dist.get(name):
                    return _error(400, f"distribution[{i}].{name} is required", f"distribution.{name}")
            if not re.fullmatch(re.escape(ident) + r"-\d{3}", dist["resourceID"]):
                return _error(400, f"distribution[{i}].resourceID must be {ident}-<3 digits>", "distribution.resourceID")
            if dist["format"] not in FORMATS:
                return _error(400, f"distribution[{i}].format {dist['format']!r} is not a known format", "distribution.format")
            if dist["characterSetCode"] not in ("UTF-8", "BIG5"):
                return _error(400, f"distribution[{i}].characterSetCode must be UTF-8 or BIG5", "distribution.characterSetCode")
        if self.reject_field and self.reject_field in body:
            return _error(400, f"{self.reject_field}: rejected by the portal's review", self.reject_field)
        return None

    async def _gate(self, request: Request) -> JSONResponse | None:
        self.requests.append((request.method, request.url.path))
        if self.fail_next:
            status = self.fail_next.pop(0)
            return _error(status, "service temporarily unavailable" if status >= 500 else "error")
        if request.headers.get("authorization") != self.api_key:
            return _error(401, "invalid or missing API key in the Authorization header")
        return None

    async def _slow(self):
        if self.slow_next:
            self.slow_next -= 1
            time.sleep(self.delay)  # blocks like a busy server; the client times out meanwhile

    async def create(self, request: Request):
        if (refused := await self._gate(request)) is not None:
            return refused
        body = await request.json()
        if (invalid := self._invalid(body)) is not None:
            return invalid
        if body["identifier"] in self.datasets:
            return _error(409, f"dataset {body['identifier']} already exists; use PUT to update", "identifier")
        self.datasets[body["identifier"]] = body
        await self._slow()
        return JSONResponse({"success": True, "result": {"identifier": body["identifier"]}})

    async def update(self, request: Request):
        if (refused := await self._gate(request)) is not None:
            return refused
        ident = request.path_params["identifier"]
        if ident not in self.datasets:
            return _error(404, f"dataset {ident} not found", "identifier")
        body = await request.json()
        if (invalid := self._invalid(body)) is not None:
            return invalid
        if body["identifier"] != ident:
            return _error(400, "the body's identifier differs from the URL's", "identifier")
        self.datasets[ident] = body
        await self._slow()
        return JSONResponse({"success": True, "result": {"identifier": ident}})

    async def delete(self, request: Request):
        if (refused := await self._gate(request)) is not None:
            return refused
        if self.datasets.pop(request.path_params["identifier"], None) is None:
            return _error(404, "dataset not found", "identifier")
        return JSONResponse({"success": True, "result": {}})


class Running:
    """Serve an ASGI app on a free port in a thread, for the life of a fixture."""

    def __init__(self, app, port: int):
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the stand-in did not start")
            time.sleep(0.05)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)
