"""Credentials never reach a record or a log: they are replaced before anything is written.

A caller may send its key or token in the query (``?api_key=``, ``?token=``), and a key, token or
JWT can turn up in free text (an error message, a path). ``redact_query`` replaces the value of
every credential parameter (by name, also when the name is percent-encoded); ``redact`` also
replaces anything shaped like a geocloud key (its public id is kept, for the trail), a geocloud
token, a JWT or an ``Authorization`` value. ``RedactingFilter`` applies it to every log record.
"""

import logging
import re
from urllib.parse import unquote_plus

CREDENTIAL_PARAMETERS = frozenset({"api_key", "apikey", "token", "access_token"})
MASK = "REDACTED"
_SHAPES = [
    (re.compile(r"gck_([A-Za-z0-9]{12})_[A-Za-z0-9_-]{43}"), rf"gck_\1_{MASK}"),
    (re.compile(r"gct_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"), f"gct_{MASK}"),
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), MASK),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {MASK}"),
]
_QUERY = re.compile(r"\?([^\s\"'#]*)")


def redact_query(query: str) -> str:
    """``query`` (a URL's query string) with the value of every credential parameter replaced."""
    if not query:
        return query
    parts = re.split(r"([&;])", query)
    for i, part in enumerate(parts):
        name, eq, _ = part.partition("=")
        if eq and unquote_plus(name).strip().lower() in CREDENTIAL_PARAMETERS:
            parts[i] = f"{name}={MASK}"
    return _shapes("".join(parts))


def redact(text: str) -> str:
    """Free text (a log line, a path, a URL) with every credential in it replaced."""
    if not text:
        return text
    if "?" in text:
        text = _QUERY.sub(lambda m: "?" + redact_query(m.group(1)), text)
    return _shapes(text)


def _shapes(text: str) -> str:
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


def redact_detail(detail: dict) -> dict:
    """An audit record's details with every string value redacted (the query as a query)."""
    return {k: (redact_query(v) if k == "query" else redact(v)) if isinstance(v, str) else v
            for k, v in detail.items()}


class RedactingFilter(logging.Filter):
    """A logging filter (for handlers) that redacts credentials from the message (formatted with its
    arguments first, so that a placeholder is never taken for a value) and the formatted exception,
    so that no handler ever writes one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access":  # a fixed template; its formatter reads the arguments
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args or ())
        else:
            try:
                message = record.getMessage()
            except (TypeError, ValueError):  # a malformed call: leave it to logging to report
                return True
            record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True
