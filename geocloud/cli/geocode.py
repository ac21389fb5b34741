"""``geocloud geocode``: geocode a CSV of addresses against the live 門牌 layer."""

import sys
from collections import Counter
from pathlib import Path

import typer
from rich.table import Table

from geocloud import db, geocode
from geocloud.cli.output import err_console
from geocloud.errors import InputError


def geocode_csv(
    file: Path = typer.Argument(..., help="A UTF-8 CSV file with a column of addresses"),
    column: str = typer.Option(..., "--column", help="The column holding the addresses, e.g. 地址"),
    out: Path = typer.Option(None, "--out", help="Where to write the result CSV (default: standard output)"),
    crs: str = typer.Option("CRS84", "--crs", help="CRS of the x/y result columns: CRS84, EPSG:4326 or EPSG:3826"),
    lock: str = typer.Option("", "--lock", help="Keep matches inside: county, district, road, lane (comma list)"),
    max_distance: int = typer.Option(30, "--max-distance", help="Nearest-number search distance in house numbers"),
    same_parity: bool = typer.Option(True, "--same-parity/--any-parity", help="Prefer the same side of the street"),
):
    """Add coordinates and a match type to every row of FILE, keeping every input column and row."""
    uri = geocode.service.CRS_CHOICES.get(crs)
    if uri is None:
        raise InputError(f"unknown CRS {crs!r}", where="--crs", fix="use CRS84, EPSG:4326 or EPSG:3826")
    if not file.is_file():
        raise InputError("file not found", where=str(file), fix="check the path")
    # imported here: the provider imports pygeoapi, which this command needs only now
    from geocloud.serve.ogcapi.provider import srid_and_flip

    srid, flip = srid_and_flip(uri, 3826)
    try:
        options = geocode.service.options_from(
            {"lock": lock, "max_distance": str(max_distance), "same_parity": str(same_parity).lower()}, srid, flip)
        header, rows = geocode.read_csv(file.read_bytes(), column, str(file))
    except geocode.BadRequest as exc:
        raise InputError(str(exc), fix="save the CSV as UTF-8 and name an existing column") from None
    counts: Counter = Counter()
    sink = out.open("w", encoding="utf-8", newline="") if out else sys.stdout
    try:
        with db.connect() as conn:
            for chunk in geocode.write_csv(header, geocode.geocode_rows(conn, rows, column, options), counts):
                sink.write(chunk)
    finally:
        if out:
            sink.close()
    table = Table(title=f"{sum(counts.values())} rows geocoded")
    table.add_column("match type")
    table.add_column("rows", justify="right")
    for kind, n in counts.most_common():
        table.add_row(kind, str(n))
    err_console.print(table)
