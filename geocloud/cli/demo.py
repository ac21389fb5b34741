"""``geocloud demo``: generate the sample city and load it through the real ETL."""

from pathlib import Path

import typer
from rich.table import Table

from geocloud import db
from geocloud.cli.output import console, err_console
from geocloud.config import get_settings
from geocloud.etl import run_pipeline
from geocloud.sample import generate

PIPELINES = ["districts", "roads", "buildings", "addresses", "zoning", "landmarks", "topo", "satellite", "topo-sheets"]


def demo(
    folder: Path = typer.Option(None, "--dir", help="Where to write the sample city (default: <data dir>/sample)"),
    scale: float = typer.Option(1.0, "--scale", help="Sample size multiplier (1 = 2,000 buildings)"),
):
    """Generate the sample city, load every pipeline through the real ETL, and show what is live."""
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
    console.print("history of a layer: [bold]geocloud etl history buildings[/]")
