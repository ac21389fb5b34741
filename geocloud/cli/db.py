"""``geocloud db``: schema migrations."""

import typer
from rich.table import Table

from geocloud import db
from geocloud.cli.output import console

app = typer.Typer(help="The PostGIS database schema.", no_args_is_help=True)


@app.command()
def upgrade():
    """Apply pending migrations (idempotent; safe to run from several workers at once)."""
    applied = db.upgrade()
    for m in applied:
        console.print(f"applied {m.version:04d}_{m.name}")
    console.print(f"[green]database is up to date[/] ({len(applied)} migration(s) applied now)")


@app.command()
def status():
    """Show which migrations are applied."""
    table = Table(title="migrations")
    for col in ("version", "name", "applied"):
        table.add_column(col)
    for state in db.status():
        when = state.applied_at.isoformat(timespec="seconds") if state.applied_at else "[yellow]pending[/]"
        table.add_row(f"{state.migration.version:04d}", state.migration.name, when)
    console.print(table)
