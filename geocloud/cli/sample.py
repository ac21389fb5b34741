"""``geocloud sample``: the generated sample city."""

from pathlib import Path

import typer

from geocloud.cli.output import console, err_console
from geocloud.sample import generate as generate_city

app = typer.Typer(help="The generated, Taichung-like sample city.", no_args_is_help=True)


@app.command()
def generate(
    folder: Path = typer.Argument(..., help="Folder to write the sample sources and manifest.json into"),
    scale: float = typer.Option(1.0, "--scale", min=0.001,
                                help="Size multiplier: 1 = 2,000 buildings; 500 = 1,000,000 buildings"),
    seed: int = typer.Option(7, help="Random seed; the same seed gives the same city"),
):
    """Write a deterministic Taichung-like data set in the formats agencies deliver."""
    with err_console.status("generating") as status:
        manifest = generate_city(folder, scale=scale, seed=seed,
                                 progress=lambda step: status.update(f"generating {step}"))
    for name, count in manifest["counts"].items():
        console.print(f"{name}: {count}")
    console.print(f"[green]wrote[/] {folder / 'manifest.json'}")
