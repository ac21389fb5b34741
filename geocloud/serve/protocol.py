"""uvicorn's HTTP protocol (httptools, as ``geocloud serve`` runs it) with each answer's head and body
sent to the socket in one write.

uvicorn writes the status line and headers when the application sends ``http.response.start`` and
the body when it sends ``http.response.body``: two ``send`` system calls, two TCP segments (its
sockets set TCP_NODELAY), for an answer of a few kilobytes. On a warm tile that second write was
about a tenth of the server's CPU (py-spy over HTTP, bench/tiles.py ``--parts warm``); nginx sends
head and body together. Here the connection's transport holds what is written until the event
loop's next turn (or until 64 KiB are held) and hands it on in one ``write``: an answer sent without
a pause in between, as any answer whose body is at hand is, leaves in one segment. Nothing else
changes: closing, a half-close by the client and write_eof send what is held first; flow control
and every other call are the transport's.
"""

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HOLD = 64 << 10  # bytes held at most: past that, what is held goes on at once


class OneWrite(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(_Held(transport, self.loop))

    def eof_received(self):
        # the client half-closed: the real transport closes itself when this returns (not through
        # _Held.close), so what this turn wrote must go first
        self.transport.flush()
        return super().eof_received()


class _Held:
    """A transport whose writes of one turn of the event loop go to the socket as one."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if type(data) is not bytes:  # a bytearray or memoryview may change after send() returns
            data = bytes(data)
        self._held.append(data)
        self._size += len(data)
        if self._size >= HOLD:
            self.flush()
        elif len(self._held) == 1:
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        held, self._held, self._size = self._held, [], 0
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

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

    def __getattr__(self, name):  # is_closing, get_extra_info, pause_reading, set_protocol...
        return getattr(self._transport, name)
