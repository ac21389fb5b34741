"""``geocloud serve``: the one ASGI application, under uvicorn."""

import typer
import uvicorn

from geocloud import db


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for every interface)"),
    port: int = typer.Option(8000, help="TCP port"),
    workers: int = typer.Option(1, help="Worker processes; they share nothing but PostGIS and the data directory"),
):
    """Serve OGC API Features and downloads for every live layer of the catalog."""
    db.connect().close()  # fail now, with a clear message, if the database is unreachable
    uvicorn.run("geocloud.serve:create_app", factory=True, host=host, port=port, workers=workers,
                proxy_headers=True, forwarded_allow_ips="*", log_level="warning")
