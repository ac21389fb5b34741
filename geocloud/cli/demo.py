"""``geocloud demo``: generate the sample city, load it through the real ETL, serve it, and register
the sample's agency layer over the management API once the server answers (demo_agency)."""

import threading
from pathlib import Path

import httpx
import typer
from rich.table import Table

from geocloud import db
from geocloud.access import agencies
from geocloud.access import keys as api_keys
from geocloud.catalog import get_catalog
from geocloud.cli import demo_agency
from geocloud.cli.output import console, err_console
from geocloud.cli.serve import serve
from geocloud.config import get_settings
from geocloud.errors import GeocloudError
from geocloud.etl import run_pipeline
from geocloud.sample import generate

PIPELINES = ["districts", "roads", "buildings", "addresses", "zoning", "landmarks", "topo", "satellite", "topo-sheets",
             "inspection-sites", "road-works"]


def demo(
    folder: Path = typer.Option(None, "--dir", help="Where to write the sample city (default: <data dir>/sample)"),
    scale: float = typer.Option(1.0, "--scale", help="Sample size multiplier (1 = 2,000 buildings)"),
    host: str = typer.Option("127.0.0.1", help="Address to serve on"),
    port: int = typer.Option(8000, help="Port to serve on"),
    no_serve: bool = typer.Option(False, "--no-serve", help="Load the sample city (its agency layer through a "
                                                            "server started briefly), then stop"),
):
    """Generate the sample city, load every pipeline through the real ETL, serve it, and register the
    Transportation Bureau's bicycle stations over the management API as the bureau's editor would."""
    folder = folder or get_settings().data_path / "sample"
    db.upgrade()
    with err_console.status("generating the sample city"):
        manifest = generate(folder, scale=scale)
    table = Table(title=f"sample city loaded from {folder}")
    for col in ("pipeline", "status", "loaded", "versions"):
        table.add_column(col)
    for name in PIPELINES:
        with err_console.status(f"loading {name}"):
            report = run_pipeline(name, folder / manifest["pipelines"][name])
        loaded = report.counts.get("loaded", report.counts.get("files"))
        table.add_row(name, report.status, str(loaded), ", ".join(f"{k} v{v}" for k, v in report.versions.items()))
    console.print(table)
    with db.transaction() as conn:
        agencies.sync(conn, get_catalog(), "demo")
        demo_key = api_keys.create(conn, "TCG-FIRE", "demo inspector", "inspector", None, api_keys.parse_expiry("7d"))
    owner = next(iter(manifest["agency_layers"].values()))["owner"]
    editor, admin = demo_agency.agency_keys(owner)
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    console.print(f"""
[bold]geocloud is serving the sample city[/]
  OGC API landing page   {base}/
  QGIS connection URL    {base}   (Layer > Add Layer > Add WFS / OGC API - Features Layer)
  GDAL                   ogrinfo OAPIF:{base} buildings
  map viewer             {base}/map/
  collections            {base}/collections?f=html
  base map TileJSON      {base}/tiles/WebMercatorQuad/tilejson.json
  a layer's TileJSON     {base}/collections/zoning/tiles/WebMercatorQuad/tilejson.json
  satellite TileJSON     {base}/rasters/satellite/WebMercatorQuad/tilejson.json
  satellite as coverage  gdal_translate -oo CACHE=NO OGCAPI:{base}/collections/satellite satellite.tif
  WMTS (TGOS, QGIS)      {base}/wmts/1.0.0/WMTSCapabilities.xml
  MapLibre style         {base}/styles/basemap.json
  a download             {base}/collections/zoning/download?f=gpkg
  history of a layer     geocloud etl history buildings
  TWSMP metadata (TGOS)  {base}/metadata/zoning.xml
  DCAT-AP feed           {base}/catalog/dcat.jsonld
  open-data check        geocloud publish check zoning --server {base}
  API description        {base}/openapi?f=html
  load balancer check    {base}/health/ready

[bold]Access control[/]: 道路施工 road_works is internal (city agencies), 公安稽查 inspection_sites is restricted
to the Fire (inspectors) and Construction bureaus. Anonymous callers see neither; with this demo key of
the Fire Bureau (valid 7 days) both appear:
  curl -H "X-API-Key: {demo_key}" {base}/collections/inspection_sites/items
  QGIS: Authentication > Basic, any user name, the key as password
""", soft_wrap=True)
    share = (folder, manifest, editor, admin)
    if no_serve:
        brief_port = demo_agency.free_port()
        log = get_settings().data_path / "demo-server.log"
        with err_console.status(f"registering {owner}'s layer over HTTP (a server started briefly on port {brief_port})"), \
                demo_agency.brief_server(brief_port, log) as brief:
            _share(brief, base, *share)
        console.print(f"(--no-serve: that server has stopped; `geocloud serve --port {port}` serves what the lines name)")
        return
    threading.Thread(target=_share_when_up, args=(base, base, *share), daemon=True).start()
    serve(host=host, port=port, workers=1)


def _share_when_up(*args) -> None:
    """``_share`` beside the running server: a failure is told, the server goes on."""
    try:
        _share(*args)
    except (GeocloudError, httpx.HTTPError) as exc:
        err_console.print(f"[bold red]registering the agency layer over HTTP failed[/]: {exc}")


def _share(reach: str, base: str, folder: Path, manifest: dict, editor: str, admin: str) -> None:
    """The sample's agency layers registered over HTTP at ``reach`` once it answers; then what was
    done and the curl lines to do it again at ``base``."""
    demo_agency.wait_ready(reach)
    steps = demo_agency.register(reach, folder, manifest, editor, admin)
    table = Table(title="an agency layer registered over the management API (/manage)")
    for col in ("step", "request", "outcome"):
        table.add_column(col)
    for row in steps:
        table.add_row(*row)
    console.print(table)
    console.print(f"""[bold]Agency layers[/]: the Transportation Bureau's YouBike stations went in as an agency would
send them, over HTTP with its editor's key (the entry, the CSV, publish); being public, it waited for
the GIS office's review until its admin approved it. To walk the same path (GET /manage/layers first):
{demo_agency.curl_lines(base, folder, manifest, editor, admin)}
""", soft_wrap=True)
