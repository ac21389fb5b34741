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

REDACT = {"()": "geocloud.access.redact.RedactingFilter"}


def log_config(access_log: bool) -> dict:
    """uvicorn's logging set-up, with every handler redacting and warnings (and, if asked, the
    access log) shown; geocloud's loggers write through the same redacting handler."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": REDACT}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    config["loggers"]["uvicorn"]["level"] = "WARNING"
    config["loggers"]["uvicorn.error"]["level"] = "WARNING"
    config["loggers"]["uvicorn.access"]["level"] = "INFO" if access_log else "WARNING"
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    return config


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for every interface)"),
    port: int = typer.Option(8000, help="TCP port"),
    workers: int = typer.Option(1, help="Worker processes; they share nothing but PostGIS and the data directory"),
    access_log: bool = typer.Option(False, "--access-log/--no-access-log",
                                    help="Log every request to standard output (credentials in queries redacted)"),
):
    """Serve OGC API Features and downloads for every live layer of the catalog."""
    access_log = access_log is True  # `geocloud demo` calls this function and leaves the option's default object
    db.connect().close()  # fail now, with a clear message, if the database is unreachable
    uvicorn.run("geocloud.serve:create_app", factory=True, host=host, port=port, workers=workers,
                proxy_headers=False, server_header=False, access_log=access_log, log_level=None,
                log_config=log_config(access_log))
