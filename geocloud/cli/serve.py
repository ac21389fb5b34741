"""``geocloud serve``: the one ASGI application, under uvicorn (its httptools protocol, writing each
answer's head and body in one write: serve/protocol.py).

Every log handler (uvicorn's error log, geocloud's access log and loggers, pygeoapi's) passes records
through ``access.redact.RedactingFilter``, so a key or token sent in a query never reaches a log; all
of them write to standard error, as text or (``--log-format json``) one JSON object a line naming the
request (logs.py). Forwarded headers are handled by the application (serve/headers.py, from
GEOCLOUD_TRUSTED_PROXIES only), not by uvicorn, which would believe them from anyone.

With /metrics on (GEOCLOUD_METRICS), the workers count into one PROMETHEUS_MULTIPROC_DIR of this
server's own (a fresh temporary folder, removed on exit), so one scrape covers them all.
"""

import atexit
import copy
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import typer
import uvicorn
from uvicorn.config import LOGGING_CONFIG

from geocloud import db
from geocloud.config import get_settings
from geocloud.errors import DatabaseError

REDACT = {"()": "geocloud.access.redact.RedactingFilter"}
JSON = {"()": "geocloud.logs.JsonFormatter"}


def log_config(access_log: bool, log_format: str = "text") -> dict:
    """uvicorn's logging set-up, with every handler redacting and warnings (and, if asked, the
    access log) shown, all on standard error (one stream: the server's log); geocloud's loggers
    write through the same redacting handler. pygeoapi's records wait for the status of the answer
    they belong to (logs.py): a client's mistake is one INFO line, a server error keeps its
    traceback."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": REDACT}
    if log_format == "json":
        config["formatters"] = {"default": JSON, "access": JSON}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
        handler["stream"] = "ext://sys.stderr"
    config["loggers"]["uvicorn"]["level"] = "WARNING"
    config["loggers"]["uvicorn.error"]["level"] = "WARNING"
    config["loggers"]["uvicorn.access"]["level"] = "WARNING"  # geocloud.access logs each request instead
    level = "INFO" if access_log else "WARNING"
    for name in ("geocloud.access", "geocloud.clienterrors"):
        config["loggers"][name] = {"level": level}
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    config["handlers"]["pygeoapi"] = {"class": "geocloud.logs.ClientErrorHandler", "stream": "ext://sys.stderr",
                                      "formatter": "default", "filters": ["redact"]}
    config["loggers"]["pygeoapi"] = {"handlers": ["pygeoapi"], "level": "ERROR", "propagate": False}
    return config


def _metrics_folder() -> None:
    """One PROMETHEUS_MULTIPROC_DIR for this server's workers, empty at start (a folder set in the
    environment is emptied of its counters; else a temporary one, removed on exit). Never the shared
    data directory: every node counts its own workers."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        for old in Path(folder).glob("*.db"):
            old.unlink()
        return
    folder = tempfile.mkdtemp(prefix="geocloud-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    # uvicorn ends by raising the SIGTERM it caught again, with the handler it found: make that an
    # exit that runs the clean-up above (the default handler would end the process without it)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def _check_database() -> None:
    """Fail now, with a clear message, if no database is reachable. The replica alone is enough to
    serve reads: a node restarted while the primary is down starts."""
    read_url = get_settings().database_read_url
    if read_url:
        try:
            db.connect(read_url).close()
            return
        except DatabaseError:
            pass
    db.connect().close()


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for every interface)"),
    port: int = typer.Option(8000, help="TCP port"),
    workers: int = typer.Option(1, help="Worker processes; they share nothing but PostGIS and the data directory"),
    access_log: bool = typer.Option(None, "--access-log/--no-access-log", show_default=False,
                                    help="Log every request to standard error, credentials in queries redacted "
                                         "(default: GEOCLOUD_ACCESS_LOG, off)"),
    log_format: str = typer.Option(None, "--log-format", show_default=False,
                                   help="text, or json: one JSON object a line with the request id "
                                        "(default: GEOCLOUD_LOG_FORMAT, text)"),
):
    """Serve OGC API Features and downloads for every live layer of the catalog."""
    settings = get_settings()
    if not isinstance(access_log, bool):  # not given, or `geocloud demo` calling this function directly
        access_log = settings.access_log
    if not isinstance(log_format, str):
        log_format = settings.log_format
    if log_format not in ("text", "json"):
        raise typer.BadParameter(f"must be text or json, got {log_format!r}",
                                 param_hint="--log-format (or GEOCLOUD_LOG_FORMAT)")
    if settings.metrics.strip() not in ("", "off"):
        _metrics_folder()  # before prometheus_client is imported: it picks its storage then
    from geocloud.serve.metrics import Access

    Access(settings.metrics)  # a mistake in GEOCLOUD_METRICS stops the start, with what to write
    _check_database()
    uvicorn.run("geocloud.serve.observe:create_app", factory=True, host=host, port=port, workers=workers,
                proxy_headers=False, server_header=False, access_log=False, log_level=None,
                http="geocloud.serve.protocol:OneWrite",  # httptools, each answer's head and body in one write
                log_config=log_config(access_log, log_format))
