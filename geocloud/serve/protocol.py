"""uvicorn's HTTP protocol (httptools, as ``geocloud serve`` runs it) with each answer's head and body
sent to the socket in one write.

uvicorn writes the status line and headers when the application sends ``http.response.start`` and
the body when it sends ``http.response.body``: two ``send`` system calls, two TCP segments (its
sockets set TCP_NODELAY), for an answer of a few kilobytes. On a warm tile that second write was
about a tenth of the server's CPU (py-spy over HTTP, bench/tiles.py ``--parts warm``); nginx sends
head and body together. Here the connection's transport holds what is written until the event
loop's next turn (or until 64 KiB are held) and hands it on in one ``write``: an answer sent without
a pause in between, as any answer whose body is at hand is, leaves in one segment. Closing, a
half-close by the client and write_eof send what is held first; flow control and every other call
are the transport's.

An application that can answer a request without awaiting anything (serve/observe.py's
``answer_now``: the warm tile path) is asked first, when uvicorn would start the request's task; its
answer (status, headers, body, and the request's own headers after them) is written at once, encoded
as uvicorn encodes an ASGI answer (headers given as a tuple are encoded once, while the same tuple
comes again: a cached tile's answer), and uvicorn goes on as when a
task completes an answer (keep-alive, pipelined requests, closing). Creating and running the task, the
ASGI messages and their encoding were about half of the server's CPU on a warm tile. A connection
keeps one keep-alive timer, where uvicorn made one per request.
"""

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

HOLD = 64 << 10  # bytes held at most: past that, what is held goes on at once
PER_TURN = 32  # answers written as read, at most, before the connection lets the event loop go on
LOG = logging.getLogger("geocloud.serve")


class OneWrite(HttpToolsProtocol):
    _turn = 0  # answers written now since the event loop last gave this connection a turn

    def _start_asgi_task(self, cycle: RequestResponseCycle, app) -> None:  # uvicorn's, as a request is read
        if self._answered_now(cycle, app):
            self._next()
        else:
            self._task(cycle, app)

    def _task(self, cycle: RequestResponseCycle, app) -> None:
        self._idle_since = None  # busy until the task's answer: the keep-alive timer must not close it
        super()._start_asgi_task(cycle, app)

    def _answered_now(self, cycle: RequestResponseCycle, app) -> bool:
        """Write the application's ``answer_now`` to the request, if it has one (``app`` is the
        application itself: uvicorn's proxy-headers middleware, off in ``geocloud serve``, would hide it).

        Not while the client is not reading what it was sent (writing paused): a task then waits for
        it, and the requests after it wait in uvicorn's pipeline with reading paused, so a client that
        only sends cannot make the server hold its answers without bound. Not more than PER_TURN in one
        turn of the event loop: the next one is a task, so a connection pipelining thousands of
        requests lets the others take their turns. A failure is logged, and the task answers."""
        now = getattr(app, "answer_now", None)  # not on uvicorn's 503 for too many connections
        if now is None or self._turn >= PER_TURN or self.flow.write_paused or self.transport.is_closing():
            return False
        try:
            found = now(cycle.scope)
        except Exception:
            LOG.exception("answering %s as it was read failed; the application answers", cycle.scope["path"])
            return False
        if found is None:
            return False
        self._turn += 1
        status, headers, body, own = found
        head, framed = _encoded(headers)
        content = [STATUS_LINE[status], _lines(self.server_state.default_headers), head, _lines(own)]
        if not framed and status not in (204, 304):  # uvicorn would send it chunked; its length is known
            content.append(b"content-length: %d\r\n" % len(body))
        if not cycle.keep_alive:
            content.append(b"connection: close\r\n")
        content.append(b"\r\n")
        if cycle.scope["method"] != "HEAD":
            content.append(body)
        self.transport.write(b"".join(content))
        cycle.response_started = cycle.response_complete = True  # the request's body, if any, is ignored
        if not cycle.keep_alive:
            self.transport.close()
        return True

    def on_response_complete(self) -> None:  # uvicorn's cycle calls it when a task's answer is complete
        self._turn = 0
        self._next()

    def _next(self) -> None:
        """uvicorn's on_response_complete, with the keep-alive timer kept (below), and the pipelined
        requests that are answered now answered in a loop (one call inside another, thousands queued
        behind a task overflowed the stack)."""
        while True:
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            self.flow.resume_reading()
            if not self.pipeline:
                break
            cycle, app = self.pipeline.pop()
            if not self._answered_now(cycle, app):
                self._task(cycle, app)
                return
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    # uvicorn makes a keep-alive timer after each answer and cancels it when the next request's first
    # bytes come: a timer made and unmade per request. Here a connection keeps its one timer: when it
    # goes off it closes the connection if it has been idle for the whole keep-alive time since its
    # last answer, and is set again for what is left otherwise. (As in uvicorn, a request that is
    # under way, or only half sent, is not timed; unlike it, bytes ending in the middle of a request
    # after an answer leave the connection counted as idle since that answer.)
    _idle_since: float | None = None  # the event loop's time of the last answer, None while a request is under way

    def _unset_keepalive_if_required(self) -> None:  # uvicorn calls it when bytes arrive
        self._idle_since = None

    def timeout_keep_alive_handler(self) -> None:
        self.timeout_keep_alive_task = None
        if self._idle_since is None:
            return  # a request is under way: its answer sets the timer again
        left = self._idle_since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self.timeout_keep_alive_task = self.loop.call_later(left, self.timeout_keep_alive_handler)
        else:
            super().timeout_keep_alive_handler()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(_Held(transport, self.loop))

    def data_received(self, data: bytes) -> None:
        # what is answered while the request is parsed (the warm path's answers) leaves when the
        # parsing ends, without a turn of the event loop of its own
        self._turn = 0
        self.transport.holding = True
        try:
            super().data_received(data)
        finally:
            self.transport.holding = False
            self.transport.flush()

    def eof_received(self):
        # the client half-closed: the real transport closes itself when this returns (not through
        # _Held.close), so what this turn wrote must go first
        self.transport.flush()
        return super().eof_received()


ENCODED = 4096  # answers' header tuples whose encoding is kept, at most (then all are let go)
_encoded_heads: dict[int, tuple[tuple, bytes, bool]] = {}


def _encoded(headers: tuple | list) -> tuple[bytes, bool]:
    """(the header lines of ``headers``, whether a content-length is among them). A tuple's are kept
    and reused while the same tuple is handed again (the warm path hands a cached tile's answer so:
    encoding its ten headers anew was 2 µs of each request); a list's are made each time."""
    kept = _encoded_heads.get(id(headers))
    if kept is not None and kept[0] is headers:  # the entry holds the tuple: its id is not reused
        return kept[1], kept[2]
    head = _lines(headers)
    framed = any(name == b"content-length" for name, _ in headers)
    if type(headers) is tuple:
        if len(_encoded_heads) >= ENCODED:
            _encoded_heads.clear()
        _encoded_heads[id(headers)] = (headers, head, framed)
    return head, framed


def _lines(headers) -> bytes:
    return b"".join(b"%s: %s\r\n" % pair for pair in headers)


class _Held:
    """A transport whose writes of one turn of the event loop go to the socket as one."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._size = 0
        self.holding = False  # True: the caller flushes when it is done (OneWrite.data_received)

    def write(self, data: bytes) -> None:
        if type(data) is not bytes:  # a bytearray or memoryview may change after send() returns
            data = bytes(data)
        self._held.append(data)
        self._size += len(data)
        if self._size >= HOLD:
            self.flush()
        elif len(self._held) == 1 and not self.holding:
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        held, self._held, self._size = self._held, [], 0
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def is_closing(self) -> bool:  # uvicorn asks on every answer: not through __getattr__
        return self._transport.is_closing()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def writelines(self, lines) -> None:
        for data in lines:
            self.write(data)

    def __getattr__(self, name):  # get_extra_info, pause_reading, set_protocol...
        return getattr(self._transport, name)
