"""``geocloud etl``: run pipelines, inspect history, roll back.

Each command imports the ETL when it runs (numpy, Arrow, GDAL, PROJ, psycopg: about a second): a
big source's ``run`` first starts the fork server of its worker processes, which imports the same
modules meanwhile, on the core this process leaves idle while it imports."""

import contextlib
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from geocloud.cli.output import console, err_console, print_json

app = typer.Typer(help="Load base maps into PostGIS: read, validate, stage, diff, publish, roll back.",
                  no_args_is_help=True)


class RichProgress:
    """What a run reports while it works (``geocloud.etl.Progress``), as rich progress bars."""

    def __init__(self, bar: Progress):
        self.bar, self.task = bar, None

    def stage(self, name, total=None):
        if self.task is not None:
            self.bar.update(self.task, completed=self.bar.tasks[self.task].total or 1, total=self.bar.tasks[self.task].total or 1)
        self.task = self.bar.add_task(name, total=total)

    def advance(self, n):
        self.bar.advance(self.task, n)


@app.command()
def run(
    pipeline: str = typer.Argument(..., help="addresses, roads, buildings, zoning, landmarks, districts, topo, "
                                             "satellite or topo-sheets (etl/<pipeline>.yml), or an agency "
                                             "layer's id (its pipeline inferred from its entry)"),
    path: Path = typer.Argument(..., help="The source file (or folder of GeoTIFF sheets)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Do everything but publish; print the plan"),
    force: bool = typer.Option(False, "--force", help="Publish a new version even when nothing changed, or when "
                                                      "the guard would stop it (recorded in the run)"),
    as_json: bool = typer.Option(False, "--json", help="Print the run report as JSON"),
):
    """Load PATH through PIPELINE and publish it as the layer's new live version."""
    _start_processes_early(path)
    from geocloud.etl import run_pipeline

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err_console, disable=as_json)
    with bar:
        report = run_pipeline(pipeline, path, dry_run=dry_run, force=force, progress=RichProgress(bar))
    if as_json:
        print_json(report.as_dict())
        return
    console.print(f"run {report.run_id}: [bold]{report.status}[/] ({report.pipeline} from {report.source})")
    if report.encoding:
        console.print(f"  encoding: {report.encoding}")
    console.print(f"  CRS: {report.crs}; transformation: {report.transformation or 'none'}")
    console.print(f"  counts: {report.counts}")
    for layer, change in report.diff.items():
        console.print(f"  {layer}: +{change['added']} added, ~{change['changed']} changed, "
                      f"-{change['removed']} removed; changed area {change['bbox']}")
    for finding in report.guard.get("findings", []):
        said = "overridden by --force" if report.guard.get("forced") else "the guard would stop this run"
        console.print(f"  [yellow]guard[/] ({said}): {finding['message']}")
    for layer, version in report.versions.items():
        console.print(f"  [green]{layer} is now version {version}[/]")
    warnings = [i for i in report.quality.get("issues", []) if i["severity"] == "warning"]
    for w in warnings[:10]:
        console.print(f"  [yellow]warning[/]: {w['message']} ({w['count']} row(s), e.g. {w['rows'][:5]})")
    console.print(f"  quality report: {report.report_path}")


def _start_processes_early(path: Path) -> None:
    """Start the fork server of a big source's worker processes before this process imports the ETL.
    Only a head start, judged by what the source's files weigh (``parallel.big``, as the run judges
    it, before knowing whether the pipeline loads a raster): the run decides for itself whether it uses
    worker processes, and starts the server then if it is not running yet."""
    from geocloud.etl.parallel import big, start_processes

    with contextlib.suppress(OSError):  # the run names what is wrong with the path
        if big(path):
            start_processes()


@app.command()
def history(layer: str = typer.Argument(..., help="Layer id"),
            as_json: bool = typer.Option(False, "--json")):
    """Versions, runs and rollbacks of a layer."""
    from geocloud import db
    from geocloud.catalog import get_catalog
    from geocloud.etl import runs

    catalog = get_catalog()
    if layer not in catalog.registered:  # a retired agency layer keeps its history
        catalog.layer(layer)
    with db.connect() as conn:
        data = runs.history(conn, layer)
    if as_json:
        print_json(data)
        return
    table = Table(title=f"{layer}: versions")
    for col in ("version", "state", "features", "published", "run", "operator", "source sha256"):
        table.add_column(col)
    for v in data["versions"]:
        table.add_row(str(v["version"]), v["state"], str(v["feature_count"]), f"{v['published_at']:%Y-%m-%d %H:%M:%S}",
                      str(v["run_id"] or "-"), v["operator"] or "-", (v["source_sha256"] or "")[:12])
    console.print(table)
    table = Table(title=f"{layer}: runs")
    for col in ("run", "pipeline", "status", "operator", "started", "error"):
        table.add_column(col)
    for r in data["runs"]:
        status = r["status"] + (" (dry run)" if r["dry_run"] else "") + (" (forced past the guard)"
                                                                         if r["guard"].get("forced") else "")
        table.add_row(str(r["id"]), r["pipeline"], status,
                      r["operator"], f"{r['started_at']:%Y-%m-%d %H:%M:%S}", (r["error"] or "")[:60])
    console.print(table)


@app.command()
def show(run_id: int = typer.Argument(..., help="Run id (see `geocloud etl history`)")):
    """Everything recorded about one run."""
    from geocloud import db
    from geocloud.etl import runs

    with db.connect() as conn:
        print_json(runs.get(conn, run_id))


@app.command()
def rollback(layer: str = typer.Argument(..., help="Layer id"),
             to: int = typer.Option(None, "--to", help="Version to make live (default: the previous one)")):
    """Make a kept earlier version of LAYER live again, atomically."""
    from geocloud.etl import rollback_layer

    result = rollback_layer(layer, to)
    console.print(f"[green]{layer}: version {result['to_version']} is live again[/] "
                  f"(was {result['from_version']}; changed area {result['diff']['bbox_crs84']})")
