"""The ``geocloud`` command. Each concern has its own sub-command module, imported only when that
sub-command runs: ``geocloud etl run`` should not pay for loading the web server.

Exit codes: 0 success; 1 unexpected failure; 2 wrong command-line usage; 3 bad configuration
(catalog, pipeline or settings); 4 database unreachable or misconfigured; 5 a source file that
cannot be loaded as it is; 6 unknown layer, pipeline, run or version; 7 another run holds the layer
(or a backup's restore target is not empty); 8 a publishing target is unreachable or refused the push; 9 publishing refused (not public, below gold);
10 the ETL guard stopped a run that would shrink or move a live layer (`--force` publishes anyway);
11 a backup is damaged or incomplete (`geocloud backup verify` names each file).
"""

import gc
import importlib
import sys

import typer
from typer.core import TyperGroup

from geocloud.cli.output import err_console
from geocloud.errors import GeocloudError

# sub-command -> (module under geocloud.cli, its Typer app or command function)
SUBCOMMANDS = {
    "layers": ("layers", "app"),
    "db": ("db", "app"),
    "sample": ("sample", "app"),
    "etl": ("etl", "app"),
    "tiles": ("tiles", "app"),
    "publish": ("publish", "app"),
    "agencies": ("access", "agencies"),
    "keys": ("access", "keys"),
    "audit": ("audit", "audit"),
    "demo": ("demo", "demo"),
    "serve": ("serve", "serve"),
    "geocode": ("geocode", "geocode_csv"),
    "backup": ("backup", "app"),
}


class LazyGroup(TyperGroup):
    def list_commands(self, ctx) -> list[str]:
        return list(SUBCOMMANDS)

    def get_command(self, ctx, name: str):
        if name not in SUBCOMMANDS:
            return None
        module, attr = SUBCOMMANDS[name]
        target = getattr(importlib.import_module(f"geocloud.cli.{module}"), attr)
        if isinstance(target, typer.Typer):
            command = typer.main.get_group(target)  # a group even when it holds a single command
        else:
            single = typer.Typer()
            single.command(name=name)(target)
            command = typer.main.get_command(single)
        command.name = name
        return command


app = typer.Typer(
    name="geocloud",
    cls=LazyGroup,
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """臺中市圖資雲 geocloud: load the city's base maps into PostGIS and share them."""


def main() -> None:
    try:
        app()
    except GeocloudError as exc:
        err_console.print("[bold red]error:[/] ", end="")
        err_console.print(str(exc), markup=False, highlight=False)
        sys.exit(exc.exit_code)
    finally:
        # The process ends here: the interpreter would otherwise free, collection by collection, the
        # hundred thousand objects its imports made (0.2-0.4 s for an ETL run's numpy, Arrow, GDAL,
        # PROJ and psycopg); frozen, they are left to the operating system. atexit handlers, flushes
        # and the finalizers of everything not in a reference cycle still run.
        gc.freeze()
