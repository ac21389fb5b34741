"""A source file sent as a request body: its format (``?format=`` or the Content-Type), streamed to a
file under the data directory (never whole into memory) while its bytes are counted against
GEOCLOUD_UPLOAD_MAX_BYTES (a Content-Length is not trusted), and its first bytes checked against
the format it claims, so a file that lies is refused before the ETL opens it. A GeoJSON or KML body
is refused as soon as it passes the ETL's limit for such documents (``etl.limits``)."""

import contextlib
import json
import os
import tempfile
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from geocloud.config import get_settings
from geocloud.errors import InputError
from geocloud.etl import limits
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
WRITE_BYTES = 1024 * 1024  # the most of an upload held in memory at once


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


def over_limit(fmt: str, size: int, whole: bool) -> HTTPError | None:
    """The refusal of a body of ``size`` bytes (``whole``: its Content-Length, else the part received
    so far), if that is over the upload limit or the ETL's limit for the format's documents."""
    limit, document = get_settings().upload_max_bytes, limits.document_limit(fmt)
    if size > limit:
        return too_large(limit)
    if document is not None and size > document:
        return HTTPError(413, "PayloadTooLarge", str(limits.document_too_large(fmt, size if whole else None,
                                                                               "the body")))
    return None


async def receive(request: Request, fmt: str) -> Path:
    """The body, written to a new file under <data dir>/uploads; the caller removes it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and (refused := over_limit(fmt, int(declared), True)):
        raise refused
    folder = get_settings().data_path / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix="upload-", suffix=FORMATS[fmt][0], dir=folder)
    path, size, pending = Path(name), 0, bytearray()
    try:
        with os.fdopen(handle, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if refused := over_limit(fmt, size, False):
                    raise refused
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
    """Refuse a file whose first bytes are not those of ``fmt`` (a CSV sent as a GeoPackage...),
    by the ETL's own check, which names what the body looks like instead."""
    with path.open("rb") as f:
        head = f.read(limits.HEAD)
    if not head:
        raise HTTPError(422, "InvalidSource", "the request body is empty: send the source file as the body")
    try:
        limits.check_content(head, fmt, "the body")
    except InputError as exc:
        raise HTTPError(422, "InvalidSource", str(exc)) from None


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
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested deeper than Python reads
        raise HTTPError(400, "InvalidParameterValue", f"the body is not JSON ({exc}): send the catalog entry as JSON")
