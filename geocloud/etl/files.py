"""The files a vector source is made of. The standard library only: ``geocloud etl run`` weighs a
source's files before it imports the rest of the ETL (cli/etl.py)."""

import glob
from pathlib import Path

SHAPEFILE_PARTS = {".shp", ".shx", ".dbf", ".prj", ".cpg"}


def source_files(path: Path) -> list[Path]:
    """The files of a source, in name order: every file of a shapefile or a folder."""
    if path.is_dir():
        return sorted(path.iterdir())
    if path.suffix.lower() == ".shp":
        return sorted(p for p in path.parent.glob(glob.escape(path.stem) + ".*") if p.suffix.lower() in SHAPEFILE_PARTS)
    return [path]
