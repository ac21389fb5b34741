"""``geocloud publish``: metadata, TGOS, data.gov.tw, the quality check, and what is pending."""

import sys
from pathlib import Path

import typer
from rich.table import Table

from geocloud import db
from geocloud.catalog import get_catalog
from geocloud.cli.output import console, err_console, print_json
from geocloud.config import get_settings
from geocloud.errors import NotFound, PortalError, Refused
from geocloud.publish import Outcome, check as quality_check, pending as push_pending, push_datagov, push_tgos
from geocloud.publish import record_of, status as push_status
from geocloud.publish.push import service_record_of
from geocloud.publish.metadata import SERVICES

app = typer.Typer(help="Publish layers: TWSMP metadata, TGOS (CSW-T), data.gov.tw, quality checks.",
                  no_args_is_help=True)
LAYERS = typer.Argument(None, help="Layer ids")
ALL = typer.Option(False, "--all", help="Every public layer with an identifier for this target")
JSON = typer.Option(False, "--json", help="Print a machine-readable report")


def _report(outcomes: list[Outcome], as_json: bool) -> None:
    if as_json:
        print_json([vars(o) for o in outcomes])
    else:
        table = Table(title="publish")
        for col in ("layer", "target", "result", "version", "message"):
            table.add_column(col, overflow="fold")
        colour = {"refused": "yellow", "failed": "red"}
        for o in outcomes:
            table.add_row(o.layer, o.target, f"[{colour.get(o.action, 'green')}]{o.action}[/]",
                          str(o.version or "-"), o.message)
        console.print(table)
    if any(o.action == "failed" for o in outcomes):
        raise typer.Exit(PortalError.exit_code)
    if any(o.action == "refused" for o in outcomes):
        raise typer.Exit(Refused.exit_code)


@app.command()
def metadata(layer: str = typer.Argument(None, help="Layer id"),
             service: str = typer.Option(None, "--service", help=f"A service record instead: {', '.join(SERVICES)}"),
             output: Path = typer.Option(None, "--output", "-o", help="Write here instead of stdout")):
    """Write the TWSMP 2.0 (ISO 19139) record of LAYER, or of a service, derived from the catalog and live data."""
    base = get_settings().public_url
    with db.connect() as conn:
        if service:
            if service not in SERVICES:
                raise typer.BadParameter(f"use one of: {', '.join(SERVICES)}", param_hint="--service")
            found = service_record_of(conn, service, base)
            if found is None:
                raise NotFound(f"no public layer of the {service} service is live", fix="load one with geocloud etl run")
            body = found[1]
        elif layer:
            body = record_of(conn, get_catalog().layer(layer), base)[1]
        else:
            raise typer.BadParameter("name a layer or --service")
    if output:
        output.write_bytes(body)
        err_console.print(f"wrote {output}")
    else:
        sys.stdout.buffer.write(body)


@app.command()
def tgos(layers: list[str] = LAYERS, everything: bool = ALL, as_json: bool = JSON):
    """Push TWSMP records to TGOS's CSW by CSW-T (insert or update) and build the download bundles.

    With --all, the OGC API and WMTS service records are pushed too."""
    _report(push_tgos(layers, everything), as_json)


@app.command()
def datagov(layers: list[str] = LAYERS, everything: bool = ALL,
            dry_run: bool = typer.Option(False, "--dry-run", help="Check and print the payload; send nothing"),
            force: bool = typer.Option(False, "--force", help="Push even below the gold quality mark"),
            as_json: bool = JSON):
    """Create or update the datasets on data.gov.tw through the agency API (idempotent)."""
    outcomes = push_datagov(layers, everything, dry_run=dry_run, force=force)
    if dry_run and not as_json:
        print_json([o.detail.get("payload") for o in outcomes if o.detail.get("payload")])
    _report(outcomes, as_json)


@app.command()
def check(layer: str = typer.Argument(..., help="Layer id"),
          server: str = typer.Option(None, "--server", help="Server URL (default GEOCLOUD_PUBLIC_URL)"),
          as_json: bool = JSON):
    """Grade LAYER's distributions on the running server as data.gov.tw's quality system would."""
    settings = get_settings()
    report = quality_check(get_catalog().layer(layer), server or settings.public_url, timeout=settings.publish_timeout)
    if as_json:
        print_json(report.as_dict())
    else:
        table = Table(title=f"{layer}: quality check")
        for col in ("format", "linkable", "downloadable", "structure", "encoding", "columns"):
            table.add_column(col)
        for r in report.results:
            table.add_row(r.distribution.format, *("✓" if r.flags[f] else "✗" for f in
                                                   ("linkable", "downloadable", "structure", "encoding_match",
                                                    "desc_match")))
        console.print(table)
        for problem in report.problems:
            console.print(f"  [red]✗[/] {problem}")
        if report.standards and report.mark == "gold":
            console.print(f"  platinum needs a data-standard name for: {', '.join(report.standards)}")
        console.print(f"mark: [bold]{report.mark}[/]")
    if report.mark == "below gold":
        raise typer.Exit(Refused.exit_code)


@app.command()
def pending(as_json: bool = JSON):
    """Push every public layer whose live version is newer than what TGOS or data.gov.tw last received."""
    outcomes = push_pending()
    if not outcomes and not as_json:
        console.print("nothing is pending: every push is current")
        return
    _report(outcomes, as_json)


@app.command()
def status(as_json: bool = JSON):
    """Per layer and target: the version pushed, when, by whom, and whether it is stale."""
    with db.connect() as conn:
        rows = push_status(conn)
    if as_json:
        print_json(rows)
        return
    table = Table(title="publications")
    for col in ("layer", "target", "identifier", "pushed", "live", "state", "at", "by", "mark", "last error"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["layer"], r["target"], r["identifier"], f"v{r['pushed_version']}",
                      f"v{r['live_version']}" if r["live_version"] else "-",
                      "[yellow]stale[/]" if r["stale"] else "[green]current[/]", f"{r['pushed_at']:%Y-%m-%d %H:%M}",
                      r["pushed_by"], r["quality_mark"] or "-", (r["last_error"] or "")[:80])
    console.print(table)
