"""Raster sources of the sample city: satellite imagery and scanned 1/1000 sheets.

Both are plain (not cloud-optimized) GeoTIFFs in EPSG:3826, as they arrive from a vendor or a
scanner; the ETL turns them into COGs. Imagery is drawn from the same city plan as the vectors,
so roads and rivers line up with the vector layers.
"""

from pathlib import Path

import numpy as np
import rasterio
import shapely
from rasterio.features import rasterize
from rasterio.transform import from_origin

from geocloud.sample.city import CITY_HALL, City

SAT_BOX = (CITY_HALL[0] - 5_000, CITY_HALL[1] - 5_000, CITY_HALL[0] + 5_000, CITY_HALL[1] + 5_000)
SAT_RES = 10.0


def _road_shapes(city: City, width: float):
    shapes = []
    for road in city.roads:
        xs, ys = road.point(np.array([0.0, road.length]), np.zeros(2))
        shapes.append((shapely.linestrings(np.column_stack([xs, ys])).buffer(width), 1))
    return shapes


def satellite(path: Path, city: City) -> None:
    rng = np.random.default_rng(city.seed + 61)
    x0, y0, x1, y1 = SAT_BOX
    w, h = int((x1 - x0) / SAT_RES), int((y1 - y0) / SAT_RES)
    transform = from_origin(x0, y1, SAT_RES, SAT_RES)
    noise = rng.normal(0, 12, (h, w))
    roads = rasterize(_road_shapes(city, 12.0), out_shape=(h, w), transform=transform)
    rgb = np.empty((3, h, w), dtype=np.uint8)
    base = [(70, 110, 60), (80, 120, 70), (60, 95, 55)]
    for b in range(3):
        band = base[0][b] + noise + 25 * np.sin(np.arange(w) / 37.0)[None, :]
        band = np.where(roads == 1, 150 + noise / 3, band)
        rgb[b] = np.clip(band, 0, 255).astype(np.uint8)
    profile = dict(driver="GTiff", width=w, height=h, count=3, dtype="uint8", crs="EPSG:3826",
                   transform=transform, photometric="RGB", compress="deflate")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(rgb)


def scanned_sheets(folder: Path, city: City) -> list[Path]:
    """Two adjacent scanned 1/1000 sheets (500 m x 400 m at 0.5 m), paper white with black lines."""
    out = []
    res = 0.5
    for k, (sx, sy) in enumerate([(CITY_HALL[0] - 500, CITY_HALL[1] - 200), (CITY_HALL[0], CITY_HALL[1] - 200)]):
        w, h = int(500 / res), int(400 / res)
        transform = from_origin(sx, sy + 400, res, res)
        lines = rasterize(_road_shapes(city, 1.0), out_shape=(h, w), transform=transform)
        grid = np.zeros((h, w), dtype=bool)
        grid[::100, :] = True
        grid[:, ::100] = True
        img = np.where((lines == 1) | grid, 20, 245).astype(np.uint8)
        path = folder / f"sheet-94193{k + 61:03d}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8",
                           crs="EPSG:3826", transform=transform, compress="deflate") as dst:
            dst.write(img, 1)
        out.append(path)
    return out
