"""The floor of a Python tile server, for bench/tiles.py's warm comparison: a bare ASGI application
under uvicorn (httptools and uvloop, as ``geocloud serve`` runs) answering each GET with the file
under BENCH_STATIC_ROOT named by the path, read with one ``os.read`` as geocloud's tile cache does.
No routing, access check, headers or logging: what is left is uvicorn's and the kernel's share.

Run as a script, it is the floor of geocloud's own HTTP layer instead: uvicorn with
serve/protocol.py's protocol, which asks ``app.answer_now`` as each request is read, as ``geocloud
serve`` does; here that answer is the file's bytes, read once and then kept in memory as geocloud's
warm path keeps a tile's answer. What is left is httptools, uvloop, the protocol and the kernel: the
least any answer geocloud writes can cost.

    BENCH_STATIC_ROOT=DIR python -m uvicorn static_asgi:app --app-dir bench --port 8001
    BENCH_STATIC_ROOT=DIR python bench/static_asgi.py 8002
"""

import os
import sys

ROOT = os.environ.get("BENCH_STATIC_ROOT", ".")
TYPE = (b"content-type", b"application/vnd.mapbox-vector-tile")


def _read(path: str) -> bytes:
    if ".." in path:  # a bench tool on 127.0.0.1, yet it reads nothing outside its folder
        raise FileNotFoundError(path)
    fd = os.open(ROOT + path, os.O_RDONLY)
    try:
        return os.read(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


class Static:
    def __init__(self):
        self.kept: dict[str, tuple[int, tuple, bytes, tuple]] = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        try:
            body = _read(scope["path"])
        except OSError:
            await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [TYPE, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def answer_now(self, scope) -> tuple[int, tuple, bytes, tuple] | None:
        """For serve/protocol.py: the whole answer, from memory after the first time (None: a task);
        its headers a tuple, which the protocol encodes once, and no header of the request's own."""
        found = self.kept.get(scope["path"])
        if found is None:
            try:
                body = _read(scope["path"])
            except OSError:
                return None
            found = self.kept[scope["path"]] = (200, (TYPE, (b"content-length", str(len(body)).encode())), body, ())
        return found


app = Static()

if __name__ == "__main__":
    import uvicorn

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    # as ``geocloud serve`` runs: uvicorn's proxy-headers middleware would hide ``answer_now``
    uvicorn.run("static_asgi:app", port=int(sys.argv[1]), http="geocloud.serve.protocol:OneWrite",
                proxy_headers=False, server_header=False, access_log=False, log_level="error")
