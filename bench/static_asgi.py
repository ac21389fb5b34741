"""The floor of a Python tile server, for bench/tiles.py's warm comparison: a bare ASGI application
under uvicorn (httptools and uvloop, as ``geocloud serve`` runs) answering each GET with the file
under BENCH_STATIC_ROOT named by the path, read with one ``os.read`` as geocloud's tile cache does.
No routing, access check, headers or logging: what is left is uvicorn's and the kernel's share.

    BENCH_STATIC_ROOT=DIR python -m uvicorn static_asgi:app --app-dir bench --port 8001
"""

import os

ROOT = os.environ.get("BENCH_STATIC_ROOT", ".")
TYPE = (b"content-type", b"application/vnd.mapbox-vector-tile")


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    try:
        if ".." in scope["path"]:  # a bench tool on 127.0.0.1, yet it reads nothing outside its folder
            raise FileNotFoundError(scope["path"])
        fd = os.open(ROOT + scope["path"], os.O_RDONLY)
    except OSError:
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    try:
        body = os.read(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    await send({"type": "http.response.start", "status": 200,
                "headers": [TYPE, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
