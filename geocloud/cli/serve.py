"""``geocloud serve``: the one ASGI application, under uvicorn.

Every log handler (uvicorn's error and access logs, geocloud's own loggers) passes records through
``access.redact.RedactingFilter``, so a key or token sent in a query never reaches a log. Forwarded
headers are handled by the application (serve/headers.py, from GEOCLOUD_TRUSTED_PROXIES only), not
by uvicorn, which would believe them from anyone.
"""

import copy

import typer
import uvicorn
from uvicorn.config import LOGGING_CONFIG

from geocloud import db
from geocloud.config import get_settings

REDACT = {"()": "geocloud.access.redact.RedactingFilter"}


def log_config(access_log: bool) -> dict:
    """uvicorn's logging set-up, with every handler redacting and warnings (and, if asked, the
    access log) shown, all on standard error (one stream: the server's log); geocloud's loggers
    write through the same redacting handler."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": REDACT}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
        handler["stream"] = "ext://sys.stderr"
    config["loggers"]["uvicorn"]["level"] = "WARNING"
    config["loggers"]["uvicorn.error"]["level"] = "WARNING"
    config["loggers"]["uvicorn.access"]["level"] = "INFO" if access_log else "WARNING"
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    # pygeoapi logs a client's mistakes (an unknown item id) as errors with a traceback; they keep
    # going where pygeoapi's own set-up sent them (standard output, at the level of
    # pygeoapi-config.yml's logging), redacted like the rest
    config["handlers"]["pygeoapi"] = {"class": "logging.StreamHandler", "stream": "ext://sys.stdout",
                                      "formatter": "default", "filters": ["redact"]}
    config["loggers"]["pygeoapi"] = {"handlers": ["pygeoapi"], "level": "ERROR", "propagate": False}
    return config


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for every interface)"),
    port: int = typer.Option(8000, help="TCP port"),
    workers: int = typer.Option(1, help="Worker processes; they share nothing but PostGIS and the data directory"),
    access_log: bool = typer.Option(None, "--access-log/--no-access-log", show_default=False,
                                    help="Log every request to standard error, credentials in queries redacted "
                                         "(default: GEOCLOUD_ACCESS_LOG, off)"),
):
    """Serve OGC API Features and downloads for every live layer of the catalog."""
    if not isinstance(access_log, bool):  # not given, or `geocloud demo` calling this function directly
        access_log = get_settings().access_log
    db.connect().close()  # fail now, with a clear message, if the database is unreachable
    uvicorn.run("geocloud.serve:create_app", factory=True, host=host, port=port, workers=workers,
                proxy_headers=False, server_header=False, access_log=access_log, log_level=None,
                log_config=log_config(access_log))
