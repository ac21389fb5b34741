"""The ``geocloud`` command. Each concern has its own sub-command module.

Exit codes: 0 success; 1 unexpected failure; 2 wrong command-line usage; 3 bad configuration
(catalog, pipeline or settings); 4 database unreachable or misconfigured; 5 a source file that
cannot be loaded as it is; 6 unknown layer, pipeline, run or version; 7 another run holds the layer;
8 a publishing target is unreachable or refused the push; 9 publishing refused (not public, below gold).
"""

import sys

import typer

from geocloud.cli import access, db, demo, etl, geocode, layers, publish, sample, serve, tiles
from geocloud.cli.output import err_console
from geocloud.errors import GeocloudError

app = typer.Typer(
    name="geocloud",
    help="臺中市圖資雲 geocloud: load the city's base maps into PostGIS and share them.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
app.add_typer(layers.app, name="layers")
app.add_typer(db.app, name="db")
app.add_typer(sample.app, name="sample")
app.add_typer(etl.app, name="etl")
app.add_typer(tiles.app, name="tiles")
app.add_typer(publish.app, name="publish")
app.add_typer(access.agencies, name="agencies")
app.add_typer(access.keys, name="keys")
app.command(name="audit")(access.audit)
app.command(name="demo")(demo.demo)
app.command(name="serve")(serve.serve)
app.command(name="geocode")(geocode.geocode_csv)


def main() -> None:
    try:
        app()
    except GeocloudError as exc:
        err_console.print("[bold red]error:[/] ", end="")
        err_console.print(str(exc), markup=False, highlight=False)
        sys.exit(exc.exit_code)
