"""A source file sent as a request body: its format (``?format=`` or the Content-Type), streamed to a
file under the data directory (never whole into memory) while its bytes are counted against
GEOCLOUD_UPLOAD_MAX_BYTES (a Content-Length is not trusted), and its first bytes checked against
the format it claims, so a file that lies is refused before the ETL opens it."""

import contextlib
import json
import os
import tempfile
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from geocloud.config import get_settings
from geocloud.serve.http import HTTPError

# format -> (the suffix the ETL's inferred pipeline reads it by, the media types that name it)
FORMATS = {
    "shapefile": (".zip", ("application/zip", "application/x-zip-compressed")),
    "geopackage": (".gpkg", ("application/geopackage+sqlite3",)),
    "geojson": (".geojson", ("application/geo+json", "application/json")),
    "csv": (".csv", ("text/csv",)),
    "kml": (".kml", ("application/vnd.google-earth.kml+xml",)),
    "geotiff": (".tif", ("image/tiff",)),
}
MEDIA_TYPES = {media: fmt for fmt, (_, types) in FORMATS.items() for media in types}
_MAGIC = {"shapefile": (b"PK\x03\x04",), "geopackage": (b"SQLite format 3\x00",),
          "geotiff": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")}
_TEXT_START = {"geojson": b"{", "kml": b"<"}
WRITE_BYTES = 1024 * 1024  # the most of an upload held in memory at once
_BINARY = tuple(m for magics in _MAGIC.values() for m in magics)


def source_format(request: Request) -> str:
    """The format the caller names: ``?format=``, else the body's Content-Type; 415 if neither does."""
    named = request.query_params.get("format")
    if named is not None:
        if named not in FORMATS:
            raise HTTPError(400, "InvalidParameterValue", f"format: {named!r} is not one of {', '.join(FORMATS)}")
        return named
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in MEDIA_TYPES:
        raise HTTPError(415, "UnsupportedMediaType",
                        f"Content-Type {media or '(none)'!r} names no source format: send one of "
                        f"{', '.join(MEDIA_TYPES)}, or say ?format= ({', '.join(FORMATS)})")
    return MEDIA_TYPES[media]


def too_large(limit: int) -> HTTPError:
    return HTTPError(413, "PayloadTooLarge", f"the body is larger than this server takes here ({limit} bytes; "
                                             f"source files: GEOCLOUD_UPLOAD_MAX_BYTES); nothing was changed")


async def receive(request: Request, fmt: str) -> Path:
    """The body, written to a new file under <data dir>/uploads; the caller removes it."""
    limit = get_settings().upload_max_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    folder = get_settings().data_path / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix="upload-", suffix=FORMATS[fmt][0], dir=folder)
    path, size, pending = Path(name), 0, bytearray()
    try:
        with os.fdopen(handle, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                pending += chunk
                if len(pending) >= WRITE_BYTES:  # written on a thread: the event loop serves other requests
                    await run_in_threadpool(out.write, bytes(pending))
                    pending.clear()
            out.write(pending)
        check_content(path, fmt)
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return path


def check_content(path: Path, fmt: str) -> None:
    """Refuse a file whose first bytes are not those of ``fmt`` (a CSV sent as a GeoPackage...)."""
    with path.open("rb") as f:
        head = f.read(4096)
    if not head:
        raise HTTPError(422, "InvalidSource", "the request body is empty: send the source file as the body")
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if fmt in _MAGIC:
        ok = head.startswith(_MAGIC[fmt])
    elif fmt in _TEXT_START:
        ok = text.startswith(_TEXT_START[fmt])
    else:  # CSV: text, not one of the binary formats
        ok = b"\x00" not in head and not head.startswith(_BINARY)
    if not ok:
        raise HTTPError(422, "InvalidSource", f"the body is not a {fmt} file (its first bytes say otherwise): "
                                              f"send the file the Content-Type or ?format= names, or name its format")


ENTRY_MAX_BYTES = 1024 * 1024  # a catalog entry is a few kilobytes


async def read_entry(request: Request):
    """A catalog entry sent as JSON, read up to ENTRY_MAX_BYTES."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > ENTRY_MAX_BYTES:
            raise too_large(ENTRY_MAX_BYTES)
    try:
        return json.loads(bytes(body))
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPError(400, "InvalidParameterValue", f"the body is not JSON ({exc}): send the catalog entry as JSON")
