"""The outermost layer of ``geocloud serve``'s application: each request's id, access log line and metrics.

It wraps the whole Starlette application, outside Starlette's last-resort 500, so that a server
error's answer too carries ``X-Request-Id`` and is logged and counted with its status. Before the
application, it asks the warm tile path (tiles/warm.py) for a whole answer: an anonymous cached tile
is then sent as it stands, with its request id, and logged and counted the same way, without the
middlewares' and Starlette's layers around it (they cost about what the tile does). ``answer_now`` is
the same for serve/protocol.py, which asks it before starting the request's task at all.

The request id is the ``X-Request-Id`` a trusted reverse proxy sent (GEOCLOUD_TRUSTED_PROXIES; 1-128
characters of letters, digits and ``._~:=+/-``), else a new random one (128 bits from the process's
generator, seeded from the system's at start: an id names a request in the logs and guards nothing,
and ``secrets`` asks the kernel on every call). Every answer carries it, and
every log line written while the request is answered names it (logs.py).
"""

import logging
import random
import re
import time

from geocloud import logs
from geocloud.config import get_settings
from geocloud.serve import app, metrics, state
from geocloud.serve.headers import TrustedProxies
from geocloud.serve.tiles.warm import WarmTiles

ACCESS = logging.getLogger("geocloud.access")
LOG = logging.getLogger("geocloud.serve")
WARM_ASKED = "geocloud.warm_asked"  # scope key (internal): answer_now asked the warm path, which left the request on
INCOMING_ID = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._~:=+/-]{0,127}")


def create_app():
    """The application `geocloud serve` runs (uvicorn's factory). Its process follows the agency
    layer registry (an app made only to list its routes does not)."""
    state.follow_registry()
    return Observed(app.create_app(), WarmTiles())


class Observed:
    def __init__(self, inner, warm: WarmTiles):
        self.app = inner
        self.warm = warm
        self.proxies = TrustedProxies(get_settings().proxy_networks)
        self.count = metrics.enabled()

    def _request_id(self, scope) -> bytes:
        if self.proxies.trusts(scope.get("client")):
            for name, value in scope["headers"]:
                if name == b"x-request-id" and INCOMING_ID.fullmatch(value):
                    return value
        return b"%032x" % random.getrandbits(128)

    def _begin(self, scope) -> tuple[bytes, logs.RequestContext]:
        rid = self._request_id(scope)
        return rid, logs.RequestContext(rid.decode(), scope["method"], scope["path"],
                                        scope.get("query_string", b"").decode("latin-1"))

    @staticmethod
    def _warm_failed(request: logs.RequestContext) -> None:
        LOG.exception("the warm tile path failed on %s; the application answers", request.path)

    def answer_now(self, scope) -> tuple[int, tuple | list, bytes, list] | None:
        """The warm path's whole answer, logged and counted, when it needs no await: (status, its
        headers, body, this request's own headers: the request id). serve/protocol.py then writes it
        without starting the application's task (a task, the ASGI messages and uvicorn's encoding of
        them were half of a warm tile's CPU). None: the request goes to ``__call__``, as any other,
        and the warm path is not asked twice."""
        if not self.warm.takes_now(scope):
            return None
        scope[WARM_ASKED] = True
        started = time.perf_counter()
        rid, request = self._begin(scope)
        token = logs.current.set(request)  # reset: this runs in the connection's callback, not a task of its own
        try:
            try:
                found = self.warm.answer_now(scope)
            except Exception:  # the application then answers, and says what went wrong
                self._warm_failed(request)
                return None
            if found is None:
                return None
            status, headers, body = found
            logs.answered(request, status)
            self._done(scope, request, status, started, headers)
            return status, headers, body, [(b"x-request-id", rid)]
        finally:
            logs.current.reset(token)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        rid, request = self._begin(scope)
        # not reset: each request is a task of its own, and uvicorn's line about an exception that
        # escaped the application is written in this task, after this call, and names the request too
        logs.current.set(request)
        try:
            found = None if scope.get(WARM_ASKED) else await self.warm.answer(scope)
        except Exception:  # the application then answers, and says what went wrong
            self._warm_failed(request)
            found = None
        if found is not None:
            status, headers, body = found
            logs.answered(request, status)
            try:
                await send({"type": "http.response.start", "status": status, "headers": [*headers, (b"x-request-id", rid)]})
                await send({"type": "http.response.body", "body": body})
            finally:
                self._done(scope, request, status, started, headers)
            return
        status, headers = 500, None

        async def send_with_id(message):
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid)]
                logs.answered(request, status)
            await send(message)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._done(scope, request, status, started, headers)

    def _done(self, scope, request: logs.RequestContext, status: int, started: float, headers) -> None:
        """Log (when the access log is on) and count an answer with ``headers`` (None: no answer began)."""
        if request.status is None:  # no answer: the exception escaped, a server error
            logs.answered(request, 500)
        seconds = time.perf_counter() - started
        if ACCESS.isEnabledFor(logging.INFO):
            client = scope.get("client")
            ACCESS.info('%s - "%s %s HTTP/%s" %d %.1f ms', f"{client[0]}:{client[1]}" if client else "-",
                        request.method, request.path, scope.get("http_version", "1.1"), status, seconds * 1000,
                        extra={"status": status, "duration_ms": round(seconds * 1000, 2),
                               "client": client[0] if client else None})
        if self.count:
            tile = next((v for k, v in headers if k == b"x-tile-cache"), None) if headers else None
            metrics.observe(scope["path"], scope["method"], status, seconds, tile)
