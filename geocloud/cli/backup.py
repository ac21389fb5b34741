"""``geocloud backup``: create, verify and restore backups of the database and the data directory.

Exit codes (besides those of every command): 0 done (verify: the backup is whole); 4 the database is
unreachable, or no pg_dump/pg_restore of the server's version is installed, or pg_restore failed;
7 the backup folder (create) or the target database or data directory (restore) is not empty, or an
ETL run held a raster layer longer than --wait; 11 the backup is incomplete or damaged (verify, and
restore, which verifies first).
"""

from pathlib import Path

import typer

from geocloud.cli.output import console, print_json

app = typer.Typer(help="Backups: the platform's schemas (pg_dump) and the data directory's COGs and reports.",
                  no_args_is_help=True)


@app.command()
def create(
    folder: Path = typer.Argument(..., help="A new (or empty) folder to write the backup into"),
    wait: float = typer.Option(600, "--wait", help="Seconds to wait for a raster ETL run under way to finish"),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON"),
):
    """Back up GEOCLOUD_DATABASE_URL's geocloud schemas and GEOCLOUD_DATA_DIR's COGs and reports, consistently."""
    from geocloud.backup import create as create_backup

    manifest = create_backup(folder, wait=wait)
    if as_json:
        print_json(manifest)
        return
    size = sum(f["size"] for f in manifest["files"])
    live = {layer: item["live"] for layer, item in manifest["layers"].items() if item["live"] is not None}
    console.print(f"[green]backup written[/] to {folder}: {len(manifest['files'])} file(s), {size / 1e6:.1f} MB; "
                  f"{len(live)} live layer(s), migration {manifest['migration']:04d}, "
                  f"PostgreSQL {manifest['postgresql']['server']}, PostGIS {manifest['postgis']['version']}")
    if manifest["reports_missing"]:
        console.print(f"[yellow]note[/]: {len(manifest['reports_missing'])} run report(s) were no longer in the "
                      "data directory (listed in the manifest's reports_missing)")


@app.command()
def verify(folder: Path = typer.Argument(..., help="The backup folder")):
    """Check a backup without restoring it: manifest, every file's size and SHA-256, the dump's readability."""
    from geocloud.backup import verify as verify_backup

    manifest = verify_backup(folder)
    console.print(f"[green]backup is whole[/]: {len(manifest['files'])} file(s) match the manifest; taken "
                  f"{manifest['snapshot_at']} by {manifest['created_by']['operator']} "
                  f"(geocloud {manifest['geocloud_version']}, migration {manifest['migration']:04d})")


@app.command()
def restore(
    folder: Path = typer.Argument(..., help="The backup folder"),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON"),
):
    """Restore a verified backup into an EMPTY database (GEOCLOUD_DATABASE_URL) and data directory
    (GEOCLOUD_DATA_DIR); refuses, changing nothing, if either holds anything of geocloud's."""
    from geocloud.backup import restore as restore_backup

    outcome = restore_backup(folder)
    if as_json:
        print_json(outcome)
        return
    manifest = outcome["manifest"]
    console.print(f"[green]restored[/] the backup taken {manifest['snapshot_at']}: {len(manifest['layers'])} "
                  f"layer(s), migration {manifest['migration']:04d}")
    if outcome["pending_migrations"]:
        console.print(f"this geocloud has newer migrations ({', '.join(map(str, outcome['pending_migrations']))}): "
                      "run `geocloud db upgrade`")
