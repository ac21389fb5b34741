"""uvicorn's HTTP protocol (httptools, as ``geocloud serve`` runs it) with each answer's head and body
sent to the socket in one write.

uvicorn writes the status line and headers when the application sends ``http.response.start`` and
the body when it sends ``http.response.body``: two ``send`` system calls, two TCP segments (its
sockets set TCP_NODELAY), for an answer of a few kilobytes. On a warm tile that second write was
about a tenth of the server's CPU (py-spy over HTTP, bench/tiles.py ``--parts warm``); nginx sends
head and body together. Here the connection's transport holds what is written until the event
loop's next turn (or until 64 KiB are held) and hands it on in one ``write``: an answer sent without
a pause in between, as any answer whose body is at hand is, leaves in one segment. Nothing else
changes: closing writes what is held first, flow control and every other call are the transport's.
"""

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HOLD = 64 << 10  # bytes held at most: a larger answer goes on at once, in as many writes as before


class OneWrite(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(_Held(transport, self.loop))


class _Held:
    """A transport whose writes of one turn of the event loop go to the socket as one."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        self._held.append(data)
        self._size += len(data)
        if self._size >= HOLD:
            self.flush()
        elif len(self._held) == 1:
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        if self._held:
            data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
            self._held, self._size = [], 0
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name):  # is_closing, get_extra_info, pause_reading, set_protocol...
        return getattr(self._transport, name)
