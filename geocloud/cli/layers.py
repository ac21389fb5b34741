"""``geocloud layers``: read and check the layer catalog."""

import typer
from rich.table import Table

from geocloud.catalog import get_catalog
from geocloud.cli.output import console, print_json

app = typer.Typer(help="The layer catalog (layers/*.yml).", no_args_is_help=True)


@app.command("list")
def list_layers(as_json: bool = typer.Option(False, "--json", help="Print the whole catalog as JSON.")):
    """List every layer in the catalog."""
    catalog = get_catalog()
    if as_json:
        print_json({"layers": [layer.model_dump(mode="json", by_alias=True) for layer in catalog.layers.values()]})
        return
    table = Table(title="geocloud layers")
    for col in ("id", "標題", "title", "kind", "geometry", "CRS", "access", "updated"):
        table.add_column(col)
    for layer in catalog.layers.values():
        table.add_row(layer.id, layer.title.zh_TW, layer.title.en, layer.kind, layer.geometry or "-",
                      layer.crs, layer.access.level, layer.update_frequency)
    console.print(table)


@app.command()
def show(layer_id: str = typer.Argument(..., help="Layer id, e.g. roads")):
    """Show one layer's full catalog entry."""
    print_json(get_catalog().layer(layer_id).model_dump(mode="json", by_alias=True))


@app.command()
def validate():
    """Check every layer file and the agency registry; exit non-zero with the first problem."""
    catalog = get_catalog()
    console.print(f"[green]ok[/]: {len(catalog.layers)} layers, {len(catalog.agencies)} agencies")
