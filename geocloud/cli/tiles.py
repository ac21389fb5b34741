"""``geocloud tiles seed``: warm the shared tile cache for a layer (or the base map)."""

import morecantile
import typer
from rich.progress import Progress

from geocloud.catalog import get_catalog
from geocloud.cli.output import console, err_console
from geocloud.errors import ConfigError, NotFound
from geocloud.serve.state import pin, snapshot
from geocloud.serve.tiles import tilecache, vectortiles
from geocloud.serve.tiles.tms import SERVED, zoom_range

app = typer.Typer(help="The vector tile cache.", no_args_is_help=True)


def _zooms(text: str) -> tuple[int, int]:
    try:
        low, _, high = text.partition("-")
        return int(low), int(high or low)
    except ValueError:
        raise ConfigError(f"--zoom {text!r} is not a zoom or a range", fix="write e.g. --zoom 12-16") from None


@app.command()
def seed(
    layer: str = typer.Argument(..., help="A vector layer id, or 'basemap'"),
    zoom: str = typer.Option(..., "--zoom", help="Zoom range, e.g. 12-16"),
    bbox: str = typer.Option(None, "--bbox", help="lon,lat,lon,lat (CRS84); default: the layer's extent"),
    tms_id: str = typer.Option("WebMercatorQuad", "--tms", help=f"One of {', '.join(SERVED)}"),
):
    """Render and cache every tile of LAYER in the zoom range and box, so first visitors hit the cache."""
    # imported here: the routes' module imports pygeoapi, which no other command needs
    from geocloud.serve.tiles.tiles import basemap_layers, within

    tms = SERVED.get(tms_id)
    if tms is None:
        raise ConfigError(f"unknown tile matrix set {tms_id!r}", fix=f"use one of {', '.join(SERVED)}")
    pin()  # every tile rendered from the versions this snapshot names
    snap = snapshot()
    if layer == "basemap":
        layers = basemap_layers()
    else:
        item = get_catalog().layer(layer)
        if item.kind != "vector" or layer not in snap.layers:
            raise NotFound(f"{layer!r} is not a live vector layer", fix="load it first, or name a vector layer")
        layers = [item]
    low, high = _zooms(zoom)
    if bbox:
        box = [float(v) for v in bbox.split(",")]
    else:
        extents = [snap.layers[x.id].extent for x in layers if snap.layers[x.id].extent]
        box = [min(e[0] for e in extents), min(e[1] for e in extents), max(e[2] for e in extents),
               max(e[3] for e in extents)]
    ids = [x.id for x in layers]
    tiles = list(tms.tiles(*box, zooms=list(range(low, high + 1))))
    token = max(snap.layer_token(i) for i in ids)
    written = 0
    with Progress(console=err_console) as bar:
        task = bar.add_task(f"seeding {layer}", total=len(tiles))
        for tile in tiles:
            members = [x for x in layers if within(zoom_range(x.zooms, tms), tile.z)]
            if members:
                path = tilecache.tile_path("vector", layer, tms.id, tile.z, tile.x, f"{tile.y}.mvt")
                if tilecache.read(path, snap, ids, lambda: tuple(tms.bounds(tile))) is None:
                    tilecache.write(path, token, vectortiles.render(members, tms, morecantile.Tile(tile.x, tile.y, tile.z)))
                    written += 1
            bar.advance(task)
    console.print(f"{len(tiles)} tiles in zoom {low}-{high}: {written} rendered, {len(tiles) - written} already cached")
