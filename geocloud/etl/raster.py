"""Raster sources to Cloud-Optimized GeoTIFFs under the data directory.

Each version is a folder ``rasters/<layer>/v<N>/`` holding ``<layer>.tif`` (the storage CRS,
internally tiled, with overviews) and ``<layer>-webmercator.tif`` (the web-optimized variant,
aligned to the WebMercatorQuad tiles). The folder is written under a temporary name and renamed
only when complete, so a killed run leaves at most a temporary folder that the next run removes.
"""

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import morecantile
import numpy as np
import rasterio
from rasterio.enums import MaskFlags
from rasterio.errors import RasterioError
from rasterio.merge import merge
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles

from geocloud.catalog.models import Layer
from geocloud.etl.crs import CITY, TAIWAN, identify
from geocloud.etl.pipeline import Pipeline
from geocloud.errors import InputError

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")

TIFF_SUFFIXES = {".tif", ".tiff"}


@dataclass
class RasterInfo:
    files: list[Path]
    width: int
    height: int
    bands: int
    dtype: str
    crs: str
    bounds_3826: list[float]
    assign_crs: str | None = None


def source_files(path: Path) -> list[Path]:
    if not path.exists():
        raise InputError("file not found", where=str(path), fix="check the path")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in TIFF_SUFFIXES) if path.is_dir() else [path]
    if not files:
        raise InputError("the folder holds no GeoTIFF (.tif) files", where=str(path))
    return files


def inspect(files: list[Path], pipeline: Pipeline) -> RasterInfo:
    """Open every file, check CRS and extent; errors name the file."""
    infos = []
    for f in files:
        if f.stat().st_size == 0:
            raise InputError("the GeoTIFF is empty (0 bytes)", where=str(f), fix="deliver the complete file")
        try:
            with rasterio.open(f) as ds:
                ds.read(1, window=((0, min(ds.height, 16)), (0, min(ds.width, 16))))
                if ds.crs is None and not pipeline.source.crs:
                    raise InputError("the GeoTIFF has no CRS and the pipeline sets none", where=str(f),
                                     fix="set source.crs (e.g. EPSG:3826) in the pipeline")
                crs = identify(ds.crs.to_wkt() if ds.crs else pipeline.source.crs, str(f))
                b = transform_bounds(crs, "EPSG:3826", *ds.bounds)
                infos.append((ds.width, ds.height, ds.count, ds.dtypes[0], crs, b, ds.crs is None))
        except RasterioError as exc:
            raise InputError(f"not a readable GeoTIFF: {exc}", where=str(f),
                             fix="check that the file is complete and really a GeoTIFF") from None
    box = CITY if pipeline.rules.extent == "city" else TAIWAN
    for f, (_, _, _, _, crs, b, _) in zip(files, infos):
        if not np.isfinite(b).all():
            raise InputError(f"a corner coordinate of the image is NaN or infinite (bounds {list(b)} in EPSG:3826): "
                             "its georeferencing (geotransform or tie points) is broken", where=str(f),
                             fix="georeference the image again and export it; nothing was published")
        if b[0] < box[0] or b[2] > box[2] or b[1] < box[1] or b[3] > box[3]:
            raise InputError(f"the image lies outside {'Taichung City' if box is CITY else 'Taiwan'} "
                             f"(bounds {[round(v) for v in b]} in EPSG:3826); check its CRS ({crs.name})",
                             where=str(f), fix="fix the georeferencing or declare the right CRS")
    if len({i[2] for i in infos}) > 1 or len({i[3] for i in infos}) > 1:
        raise InputError("the sheets differ in band count or data type and cannot form one mosaic",
                         where=str(files[0].parent), fix="deliver sheets scanned the same way")
    bounds = [min(i[5][0] for i in infos), min(i[5][1] for i in infos),
              max(i[5][2] for i in infos), max(i[5][3] for i in infos)]
    w, h, count, dtype, crs, _, missing = infos[0]
    return RasterInfo(files, w, h, count, dtype, crs.to_string(), bounds,
                      assign_crs=crs.to_string() if missing else None)


def build_cogs(info: RasterInfo, layer: Layer, data_dir: Path, version_dir: str, run_id: int) -> int:
    """Write the version folder; return its size in bytes. A source GDAL cannot read whole (a
    truncated or damaged GeoTIFF) fails with its first bad block named, and leaves no folder."""
    final = data_dir / version_dir
    tmp = final.with_name(f"{final.name}.tmp-r{run_id}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _write_cogs(info, layer, tmp)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, RasterioError):
            raise _unreadable(info.files, exc) from None
        raise
    if final.exists():  # left by a run killed between rename and publish: never referenced, safe to replace
        shutil.rmtree(final)
    tmp.rename(final)
    return sum(p.stat().st_size for p in final.iterdir())


def _unreadable(files: list[Path], exc: RasterioError) -> InputError:
    """The first file and block GDAL cannot read, found by reading each block on its own (only once
    a conversion has failed: a sound file is read once, by the conversion itself)."""
    for f in files:
        with rasterio.open(f) as ds:
            for band in ds.indexes:
                for (row, col), window in ds.block_windows(band):
                    try:
                        ds.read(band, window=window)
                    except RasterioError as bad:
                        r0, c0 = int(window.row_off), int(window.col_off)
                        return InputError(
                            f"GDAL could not read every block; first bad block: band {band}, rows "
                            f"{r0 + 1}-{r0 + int(window.height)}, columns {c0 + 1}-{c0 + int(window.width)} "
                            f"(block {row},{col}): {bad.__cause__ or bad}", where=str(f),
                            fix="the file is truncated or corrupt: deliver the complete file (re-export or "
                                "re-download it); nothing was published")
    return InputError(f"GDAL could not convert the image: {exc.__cause__ or exc}", where=str(files[0]),
                      fix="check that the file is complete and really a GeoTIFF; nothing was published")


def _write_cogs(info: RasterInfo, layer: Layer, tmp: Path) -> None:
    profile = cog_profiles.get("deflate")
    with tempfile.TemporaryDirectory(dir=tmp) as work:
        src_path = info.files[0]
        if len(info.files) > 1:
            src_path = Path(work) / "mosaic.tif"
            datasets = [rasterio.open(f) for f in info.files]
            try:
                nodata = datasets[0].nodata if datasets[0].nodata is not None else 0
                array, transform = merge(datasets, nodata=nodata)
                meta = {k: v for k, v in datasets[0].profile.items() if k not in ("blockxsize", "blockysize", "tiled")}
                meta |= {"driver": "GTiff", "height": array.shape[1], "width": array.shape[2],
                         "transform": transform, "nodata": nodata}
            finally:
                for ds in datasets:
                    ds.close()
            with rasterio.open(src_path, "w", **meta) as dst:
                dst.write(array)
        options = dict(overview_resampling="average" if np.dtype(info.dtype).kind == "u" else "nearest",
                       quiet=True, config={"GDAL_NUM_THREADS": "ALL_CPUS"})
        if info.assign_crs:  # the source carries no CRS: the pipeline's goes onto a working copy
            copy = Path(work) / "with-crs.tif"
            shutil.copyfile(src_path, copy)
            with rasterio.open(copy, "r+") as ds:
                ds.crs = info.assign_crs
            src_path = copy
        cog_translate(src_path, tmp / f"{layer.id}.tif", profile.copy(), **options)
        web = tmp / f"{layer.id}-webmercator.tif"
        with rasterio.open(src_path) as src:
            if src.nodata is None and all(flags == [MaskFlags.all_valid] for flags in src.mask_flag_enums):
                # An alpha band marks the image's footprint, so that what the Web Mercator grid adds
                # around it becomes an internal mask (transparent in tiles), not black pixels.
                with WarpedVRT(src, add_alpha=True) as vrt:
                    cog_translate(vrt, web, profile.copy(), tms=WEB_MERCATOR, add_mask=True, **options)
            else:
                cog_translate(src, web, profile.copy(), tms=WEB_MERCATOR, **options)


def clear_leftovers(data_dir: Path, layer_id: str) -> None:
    folder = data_dir / "rasters" / layer_id
    if folder.is_dir():
        for p in folder.glob("*.tmp-r*"):
            shutil.rmtree(p, ignore_errors=True)
