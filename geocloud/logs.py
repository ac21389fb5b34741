"""What `geocloud serve`'s log lines carry: the request they belong to, as text or as one JSON object a line.

Each request gets a ``RequestContext`` (serve/observe.py sets it): its id (also the answer's
``X-Request-Id`` header), method and path. ``JsonFormatter`` (python-json-logger) writes every record
as one JSON object with time, level, logger, message, the request's id, method and path (credentials
redacted, access/redact.py), and, on access lines, status and duration_ms.

**Client mistakes are not server errors.** pygeoapi logs every answer it builds from an exception
as an ERROR with the traceback, also a correct 404 for an unknown item id. ``ClientErrorHandler``
holds pygeoapi's records back while the request they belong to is answered: if the answer is a
4xx (or any status below 500) they become one INFO line without a traceback, on the
``geocloud.clienterrors`` logger (shown when the access log is on); a 5xx lets them through as
they were, traceback included.
"""

import contextvars
import logging
from dataclasses import dataclass, field

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from geocloud.access.redact import redact, redact_query

CLIENT_ERRORS = logging.getLogger("geocloud.clienterrors")


@dataclass(slots=True)  # one a request: slots make it quicker to make
class RequestContext:
    id: str
    method: str
    raw_path: str
    query: str
    status: int | None = None
    held: list = field(default_factory=list)  # pygeoapi records waiting for the answer's status

    @property
    def path(self) -> str:
        """The path and query as they may be logged: credentials replaced."""
        return redact(self.raw_path) + (f"?{redact_query(self.query)}" if self.query else "")


current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("geocloud_request", default=None)


def answered(request: RequestContext, status: int) -> None:
    """The answer's status is known: log what pygeoapi said about it, as a client's mistake or not."""
    request.status = status
    held, request.held = request.held, []
    for handler, record in held:
        _release(handler, record, status)


def _release(handler: logging.Handler, record: logging.LogRecord, status: int) -> None:
    if status >= 500:
        logging.Handler.handle(handler, record)
    elif CLIENT_ERRORS.isEnabledFor(logging.INFO):
        cause = record.exc_info[1] if record.exc_info else None
        CLIENT_ERRORS.info("answered %d: %s%s (%s)", status, record.getMessage(), f": {cause}" if cause else "",
                           record.name)


class ClientErrorHandler(logging.StreamHandler):
    """pygeoapi's handler: its records wait for the status of the answer they belong to."""

    def handle(self, record: logging.LogRecord):
        request = current.get()
        if request is None:  # outside a request (start-up): as it is
            return super().handle(record)
        if request.status is None:
            request.held.append((self, record))
            return record
        _release(self, record, request.status)
        return record


class JsonFormatter(_JsonFormatter):
    """One JSON object a line, with the request the record belongs to (if any)."""

    def __init__(self, *args, **kwargs):
        super().__init__(["levelname", "name", "message"], rename_fields={"levelname": "level", "name": "logger"},
                         timestamp="time", reserved_attrs=[*RESERVED_ATTRS, "color_message"], json_ensure_ascii=False)

    def add_fields(self, log_data, record, message_dict):
        super().add_fields(log_data, record, message_dict)
        request = current.get()
        if request is not None:
            log_data.setdefault("request_id", request.id)
            log_data.setdefault("method", request.method)
            log_data.setdefault("path", request.path)

    def formatException(self, ei) -> str:
        return redact(super().formatException(ei))

