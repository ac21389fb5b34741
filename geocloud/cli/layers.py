"""``geocloud layers``: read and check the layer catalog; register and retire agency layers."""

from pathlib import Path

import typer
from rich.table import Table

from geocloud import db
from geocloud.access import audit
from geocloud.access.review import review as reviewed
from geocloud.catalog import core_catalog, get_catalog, registry
from geocloud.cli.output import console, print_json
from geocloud.config import operator
from geocloud.yamlfile import read_yaml

app = typer.Typer(help="The layer catalog: core layers (layers/*.yml) and agency layers (registered in PostGIS).",
                  no_args_is_help=True)


def _rows(catalog, every: bool) -> list[tuple]:
    """(layer, origin, owner, state) of the served layers, and with ``every`` of every registered one."""
    rows = [(layer, catalog.origin(i), catalog.owner(i) or "-",
             catalog.registered[i].state if i in catalog.registered else "live") for i, layer in catalog.layers.items()]
    if every:
        rows += [(r.layer, "agency", r.owner, r.state) for i, r in catalog.registered.items() if i not in catalog.layers]
    return rows


@app.command("list")
def list_layers(as_json: bool = typer.Option(False, "--json", help="Print the whole catalog as JSON."),
                every: bool = typer.Option(False, "--all", help="Also the agency layers not served (draft, retired).")):
    """List every layer in the catalog, with its origin (core or agency), owner agency and state."""
    rows = _rows(get_catalog(), every)
    if as_json:
        print_json({"layers": [{**layer.model_dump(mode="json", by_alias=True), "origin": origin, "owner": owner,
                                "state": state} for layer, origin, owner, state in rows]})
        return
    table = Table(title="geocloud layers")
    for col in ("id", "標題", "title", "kind", "geometry", "CRS", "access", "updated", "origin", "owner", "state"):
        table.add_column(col)
    for layer, origin, owner, state in rows:
        table.add_row(layer.id, layer.title.zh_TW, layer.title.en, layer.kind, layer.geometry or "-",
                      layer.crs, layer.access.level, layer.update_frequency, origin, owner, state)
    console.print(table)


@app.command()
def add(path: Path = typer.Argument(..., help="A catalog entry in YAML, as in layers/*.yml"),
        owner: str = typer.Option(..., "--owner", help="The agency that owns the layer (a code of agencies.yml)"),
        draft: bool = typer.Option(False, "--draft", help="Register it as a draft: loadable, served once live")):
    """Register (or update) an agency layer; every server picks it up within seconds."""
    core = core_catalog()
    state = "draft" if draft else "live"
    with db.transaction() as conn:  # the registration and its audit record, together
        layer = registry.register(conn, read_yaml(path), owner, operator(), core, where=str(path), state=state)
        audit.record(conn, "layer-registered", operator(), owner, layer.id, detail={"state": state})
    console.print(f"layer {layer.id} registered for {owner} ({state}); load its data with "
                  f"`geocloud etl run {layer.id} FILE`")


@app.command()
def retire(layer_id: str = typer.Argument(..., help="The agency layer's id")):
    """Take an agency layer off every surface; its data and history stay."""
    core = core_catalog()
    with db.transaction() as conn:
        registry.retire(conn, layer_id, operator(), core)
        audit.record(conn, "layer-retired", operator(), None, layer_id)
    console.print(f"layer {layer_id} retired")


@app.command()
def review(layer_id: str = typer.Argument(..., help="The agency layer's id"),
           decision: str = typer.Option(..., "--decision", help="approve (live for the access its entry asks) or "
                                                                "reject (still served to its own agency only)"),
           comment: str = typer.Option("", "--comment", help="Why (a rejection needs one)")):
    """The GIS office's review of a public layer an editor published, as POST /manage/layers/ID/review."""
    with db.connect() as conn:
        after = reviewed(conn, layer_id, decision, comment, operator())
    console.print(f"layer {layer_id}: {after['state']}")


@app.command()
def show(layer_id: str = typer.Argument(..., help="Layer id, e.g. roads")):
    """Show one layer's full catalog entry."""
    print_json(get_catalog().layer(layer_id).model_dump(mode="json", by_alias=True))


@app.command()
def validate():
    """Check every layer file and the agency registry; exit non-zero with the first problem."""
    catalog = get_catalog()
    console.print(f"[green]ok[/]: {len(catalog.layers)} layers, {len(catalog.agencies)} agencies")


@app.command("due")
def due_layers(as_json: bool = typer.Option(False, "--json", help="Print the schedule as JSON.")):
    """The update procedure at a glance: every layer's update frequency, last successful update,
    next due date and the last run's warnings, overdue layers first."""
    from datetime import datetime, timezone

    from geocloud.etl.schedule import due

    with db.connect() as conn:
        rows = due(conn, get_catalog(), datetime.now(timezone.utc))
    if as_json:
        print_json({"layers": [row.as_json() for row in rows]})
        return
    table = Table(title="geocloud layers due")
    for col in ("id", "標題", "owner", "frequency", "last update", "next due", "", "last run", "warnings"):
        table.add_column(col)
    for row in rows:
        run = row.last_run or {}
        table.add_row(row.layer, row.title, row.owner or "-", row.frequency,
                      f"{row.last_success:%Y-%m-%d}" if row.last_success else "never",
                      f"{row.next_due:%Y-%m-%d}" if row.next_due else ("now" if row.overdue else "-"),
                      "[red]overdue[/]" if row.overdue else "", run.get("status", "-"),
                      "; ".join(w.get("message", str(w)) for w in run.get("warnings") or []))
    console.print(table)
