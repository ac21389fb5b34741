"""The warm tile path: an anonymous GET or HEAD of a public layer's tile already in the tile cache,
answered whole before the application (serve/observe.py asks it first, outside every middleware).

A warm tile is a file read of a few tens of microseconds; the router (a regular expression per
route until the tile routes), Request and Response objects, the guard and the middlewares' wrapped
``send`` calls cost several times that (bench/tiles.py ``--parts warm`` compares it with nginx
serving the same bytes). This path asks exactly what the route asks, with the route's own functions
(for vector tiles ``tiles.collection_target`` and ``basemap_target``, so ``guard.layer_for``; for
raster tiles the raster tile cache's ``cacheable``; both ``access.policy.can_read`` for the
anonymous caller, against the live snapshot and catalog every worker follows through PostGIS),
counts the request in the anonymous rate limit (``guard.admit``: its 429 is ``guard.refusal``) and
answers with the route's ``tiles.answer`` or ``tiler.known_answer``, completed with the shared
headers by serve/headers.py's own ``complete``: the same status, headers and bytes. serve/observe.py
adds the request id and counts and logs it, as for any answer. A tile's two answers (200, and 304
for its ETag), their headers complete, are kept in memory while the live state and catalog they were
decided on are the worker's current ones (at most state.REFRESH seconds): a tile asked for again
within them costs a dictionary look-up.

Anything it is not sure of goes on, untouched, to the full stack: credentials of any kind (a
header, ``token=``/``api_key=``, a session cookie), a query other than ``f=mvt``/``f=pbf``, a
conditional or range header other than a single ``If-None-Match``, a root path, a layer anonymous
callers may not read or whose reads are audited, a tile not cached or no longer valid, an error. A
trusted proxy's forwarded headers are believed first (``headers.believe_forwarded``), so the rate
limit counts the real client; a request with an ``Origin`` gets its answer through the same
CORSMiddleware as the application's.
"""

from geocloud.catalog import get_catalog
from geocloud.config import get_settings
from geocloud.errors import GeocloudError
from geocloud.serve import guard, session
from geocloud.serve.headers import TrustedProxies, believe_forwarded, complete, cors
from geocloud.serve.http import HTTPError
from geocloud.serve.rasters import tiler
from geocloud.serve.state import pin, snapshot, unpin
from geocloud.serve.tiles import tiles
from geocloud.serve.tiles.tms import tile_number

PREFIXES = ("/collections/", "/tiles/", tiler.PREFIX + "/")  # of every path _cached_answer may take
QUERIES = frozenset({b"", b"f=mvt", b"f=pbf"})
CREDENTIALS = frozenset({b"authorization", b"x-api-key"})
UNHANDLED = frozenset({b"if-match", b"if-modified-since", b"if-unmodified-since", b"if-range", b"range"})


def _target(path: str) -> tuple | None:
    """(which route, its path parameters) when ``path`` is a vector tile's, as the routes parse it."""
    parts = path.split("/")
    if len(parts) == 8 and parts[1] == "collections" and parts[3] == "tiles" and parts[2] and parts[4]:
        params, target = {"collection_id": parts[2], "tms": parts[4]}, tiles.collection_target
    elif len(parts) == 6 and parts[1] == "tiles" and parts[2]:
        params, target = {"tms": parts[2]}, tiles.basemap_target
    else:
        return None
    numbers = parts[-3:]
    if not all(tile_number(n) for n in numbers):
        return None
    params.update(z=int(numbers[0]), y=int(numbers[1]), x=int(numbers[2]))
    return target, params


def _if_none_match(scope) -> tuple[bool, str | None]:
    """(may this path answer, the If-None-Match value): no credential, no header it does not handle."""
    found = None
    for name, value in scope["headers"]:
        if name in CREDENTIALS or name in UNHANDLED:
            return False, None
        if name == b"if-none-match":
            if found is not None:
                return False, None
            found = value.decode("latin-1")
        elif name == b"cookie" and session.presented(scope) is not None:
            return False, None
    return True, found


MEMO_BYTES = 32 << 20  # per worker: the answers of the tiles asked for more than once within one live state
_memo: dict[tuple[str, bytes, bool], tuple] = {}
_memo_state: tuple = (None, None)  # the live state and catalog every remembered answer was decided on
_memo_bytes = 0


def _cached_answer(scope, https: bool) -> tuple[tuple, tuple] | None:
    """The route's answer to an anonymous caller when it comes from the cache, as the route gives it
    and with the shared headers added (for a request over ``https`` or not); None when unsure.

    A tile's answers (200 and 304) are remembered for as long as the live state (snapshot) and the
    catalog the decision was made on are the process's current ones: at most state.REFRESH seconds,
    and no longer than any switch, registry change or access change is unseen by this worker."""
    global _memo_bytes, _memo_state
    query = scope.get("query_string", b"")
    if scope.get("root_path") or query not in QUERIES:
        return None
    path = scope["path"]
    raster = path.startswith(tiler.PREFIX + "/")
    if raster and (scope["method"] != "GET" or query):
        return None  # the raster tile cache keeps GETs of the plain tile only
    plain, if_none_match = _if_none_match(scope)
    if not plain:
        return None
    pinned = pin()  # the decision and the cache check on one snapshot, as the guard pins one per request
    try:
        state = (snapshot(), get_catalog())
        if state[0] is not _memo_state[0] or state[1] is not _memo_state[1] or _memo_bytes > MEMO_BYTES:
            _memo.clear()  # decided on another state (or full): none of it holds, nor keeps that state alive
            _memo_state, _memo_bytes = state, 0
        known = _memo.get((path, query, https))
        if known is None:  # (a path is parsed only once per live state: a remembered one was a tile's)
            target = None if raster else _target(path)
            # as the anonymous caller: a pipelined request's task inherits the context of the request before
            token = guard.current.set(guard.ANONYMOUS)
            try:
                known = _raster_answers(scope) if raster else _vector_answers(target) if target else None
            finally:
                guard.current.reset(token)
            if known is None:
                return None
            # the whole answer's headers as a tuple: serve/protocol.py encodes a tuple once and reuses it
            known = (known[0], *((answer, (answer[0], tuple(complete(list(answer[1]), https)), answer[2]))
                                 for answer in known[1:]))
            _memo[(path, query, https)] = known
            _memo_bytes += _size(known)
    except (HTTPError, GeocloudError, OSError, ValueError):  # the route gives its own answer (4xx, 503...)
        return None
    finally:
        unpin(pinned)
    return known[2] if if_none_match == known[0] else known[1]


def _size(answers: tuple) -> int:
    return len(answers[1][0][2]) + 1024  # the body, and about what the headers and the key take


def _vector_answers(target: tuple) -> tuple[str, tuple, tuple] | None:
    """(ETag, the 200 or 204 answer, the 304 answer) of a cached vector tile, by the route's functions."""
    name, layers, tms, tile = target[0](target[1])
    if not layers or not all(layer.is_public for layer in layers):  # none: the route's 204; others are audited
        return None
    _, _, ids, hit = tiles.cached(name, layers, tms, tile)
    if hit is None:
        return None
    answers = [tiles.answer(name, tms, tile, ids, hit[0], hit[1], "hit", None)]
    etag = dict(answers[0][1])[b"etag"].decode("latin-1")
    return etag, answers[0], tiles.answer(name, tms, tile, ids, hit[0], hit[1], "hit", etag)


def _raster_answers(scope) -> tuple[str, tuple, tuple] | None:
    """The same for a cached raster tile, by the raster tile cache's functions (tiler.TileCache)."""
    found = tiler.TileCache.cacheable(scope)
    if found is None or not get_catalog().layers[found[0]].is_public:
        return None
    _, _, headers, cached = tiler.lookup(*found, "default")
    if cached is None:
        return None
    return headers["ETag"], tiler.known_answer(headers, cached, None), tiler.known_answer(headers, cached, headers["ETag"])


ANSWER = "geocloud.warm_answer"  # scope key: the answer _stored sends, for CORSMiddleware


class WarmTiles:
    """The warm path as serve/observe.py asks it: ``await answer(scope)`` is the whole answer (status,
    headers with the shared ones, body) of a request it takes, or None to leave it to the application;
    ``answer_now(scope)`` the same without an await, for all but cross-origin requests."""

    def __init__(self):
        self.cors = cors(_stored)
        self.proxies = TrustedProxies(get_settings().proxy_networks)

    @staticmethod
    def _may_take(scope) -> bool:
        return scope["method"] in ("GET", "HEAD") and scope["path"].startswith(PREFIXES)

    def takes_now(self, scope) -> bool:
        """Whether ``answer_now`` decides this request (else only ``answer`` may take it)."""
        return self._may_take(scope) and not self._cross_origin(scope)

    def _decided(self, scope) -> tuple[tuple, bool] | None:
        """(the answer as _cached_answer gives it, or the rate limit's refusal; over HTTPS or not),
        or None to leave the request to the application; for a GET or HEAD of a tile's path."""
        https = believe_forwarded(scope, self.proxies)
        found = _cached_answer(scope, https)
        if found is None:
            return None
        try:
            guard.admit(guard.ANONYMOUS, scope)
        except HTTPError as exc:
            found = (guard.refusal(exc), None)
        return found, https

    def answer_now(self, scope) -> tuple[int, tuple | list, bytes] | None:
        """``answer`` without an await, for a request ``takes_now`` took (CORS runs as the ASGI
        middleware it is, in ``answer``). For serve/protocol.py, through serve/observe.py: a cached
        tile's headers are the same tuple each time, which the protocol encodes once."""
        decided = self._decided(scope)
        return None if decided is None else _whole(*decided)

    async def answer(self, scope) -> tuple[int, tuple | list, bytes] | None:
        decided = self._decided(scope) if self._may_take(scope) else None
        if decided is None:
            return None
        if self._cross_origin(scope):
            return await self._with_cors(scope, decided[0][0], decided[1])
        return _whole(*decided)

    def _cross_origin(self, scope) -> bool:
        if self.cors is not None:
            for name, _ in scope["headers"]:  # (asked of every warm tile: a loop is faster than any())
                if name == b"origin":
                    return True
        return False

    async def _with_cors(self, scope, answer: tuple, https: bool) -> tuple[int, list, bytes]:
        """``answer`` through CORSMiddleware, then the shared headers: in SharedHeaders' order."""
        sent = []

        async def keep(message):
            sent.append(message)
        scope[ANSWER] = answer
        await self.cors(scope, None, keep)
        return sent[0]["status"], complete(list(sent[0]["headers"]), https), answer[2]


def _whole(found: tuple, https: bool) -> tuple[int, tuple | list, bytes]:
    if found[1] is None:
        return found[0][0], complete(found[0][1], https), found[0][2]
    return found[1]


async def _stored(scope, receive, send):
    status, headers, body = scope[ANSWER]
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})
