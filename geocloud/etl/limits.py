"""What a source must be before the ETL reads it: the format its name claims, not too big for the
reader that loads it, a zip that is not a bomb and holds no path that climbs out, and features of a
size a layer can serve. Checked before anything reads a source whole, so that a hostile file is
refused in bounded memory and time, the same for ``geocloud etl run`` and an upload over HTTP.

- A file's first bytes say what it is; a name that lies (a PDF called ``.shp.zip``, a CSV called
  ``.gpkg``) is refused naming what the file looks like.
- GeoJSON and KML are documents GDAL parses as a whole: GeoJSON streams but keeps some bytes per
  feature (about 300 MB more for a 1 GB file) and reads the file twice, KML is built in memory
  (about nine times its size). Above ``GEOCLOUD_ETL_MAX_GEOJSON_BYTES`` / ``..._KML_BYTES`` they
  are refused by their size alone, with GeoPackage suggested (read at random, in batches).
- A zip is judged by its directory (Python's zipfile metadata) before GDAL opens it through
  /vsizip/: names, links, member count, total size and compression ratio. Nothing is extracted:
  GDAL and the .dbf reader read members in place (the .dbf through Python's zipfile, which stops
  at a member's declared size and then fails its CRC).
- A feature with more vertices than ``GEOCLOUD_ETL_MAX_VERTICES`` is refused as soon as its batch
  is parsed, before the repairs and reprojection whose cost grows with it.
"""

import stat
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import shapely

from geocloud.config import get_settings
from geocloud.errors import InputError
from geocloud.etl.pipeline import SUFFIXES

HEAD = 4096  # bytes of a file read to tell what it is
GRACE = 1024 ** 2  # a zip member smaller than this is not judged by its compression ratio
_ZIP = (b"PK\x03\x04", b"PK\x05\x06")
_TIFF = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_SQLITE = (b"SQLite format 3\x00",)
_SHP = (b"\x00\x00\x27\x0a",)  # a .shp's file code, 9994
# what a file starts with -> what it is, to name what was sent instead of what was claimed
_LOOKS = ((_ZIP, "a zip archive"), (_SQLITE, "an SQLite database (a GeoPackage?)"), (_TIFF, "a TIFF image"),
          ((b"%PDF",), "a PDF document"), ((b"\x1f\x8b",), "a gzip archive"), ((b"\x89PNG",), "a PNG image"),
          ((b"\xff\xd8\xff",), "a JPEG image"), ((b"Rar!",), "a RAR archive"), ((b"7z\xbc\xaf",), "a 7-Zip archive"),
          ((b"\xd0\xcf\x11\xe0",), "a Microsoft Office 97-2003 file (.xls, .doc)"), (_SHP, "a shapefile's .shp"))
_BINARY = tuple(m for magics, _ in _LOOKS for m in magics)
# format -> (what a file of it is, the first bytes it may start with; text formats: its first character)
_EXPECTED = {"shapefile": ("a shapefile file (a zip archive)", _ZIP),
             "geopackage": ("a geopackage file (an SQLite database)", _SQLITE),
             "geotiff": ("a readable GeoTIFF (a TIFF image)", _TIFF), "geojson": ("a geojson file (JSON text)", "{"),
             "kml": ("a kml file (XML text)", "<"), "csv": ("a csv file (text)", None)}
# the suffixes whose files are checked (a loose .shp is left to GDAL, which names a damaged header)
_CHECKED = {**{fmt: suffixes - {".shp"} for fmt, suffixes in SUFFIXES.items()}, "geotiff": {".tif", ".tiff"}}
_DOCUMENT_SETTING = {"geojson": "etl_max_geojson_bytes", "kml": "etl_max_kml_bytes"}


def looks_like(head: bytes) -> str:
    """What a file is, told by its first bytes: a known binary format, text, or binary data."""
    kind = next((what for magics, what in _LOOKS if head.startswith(magics)), None)
    if kind:
        return kind
    if b"\x00" in head:
        return "binary data"
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    return {b"{": "JSON text", b"[": "JSON text", b"<": "XML text"}.get(text[:1], "text")


def check_content(head: bytes, fmt: str, name: str) -> None:
    """Refuse a file whose first bytes are not those of ``fmt``, saying what it looks like instead."""
    expected, starts = _EXPECTED[fmt]
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if isinstance(starts, tuple):
        ok = head.startswith(starts)
    else:  # text: no NUL, none of the binary formats, and the character it opens with
        ok = b"\x00" not in head and not head.startswith(_BINARY) and \
            (starts is None or text.startswith(starts.encode()))
    if not ok:
        shown = head[:8].decode("latin-1").encode("unicode_escape").decode("ascii")
        raise InputError(f"{name} is not {expected}: it starts with '{shown}', {looks_like(head)}",
                         fix=f"send the {fmt} file itself, or name the format the file really is (its "
                             "suffix, or the upload's Content-Type / ?format=); nothing was published")


def document_limit(fmt: str) -> int | None:
    """The largest GeoJSON or KML file the ETL reads (None: no limit for ``fmt``)."""
    setting = _DOCUMENT_SETTING.get(fmt)
    return getattr(get_settings(), setting) if setting else None


def document_too_large(fmt: str, size: int | None, name: str) -> InputError:
    """``name`` (of ``size`` bytes, None: not all counted) is over the limit for ``fmt`` documents."""
    limit, setting = document_limit(fmt), f"GEOCLOUD_{_DOCUMENT_SETTING[fmt].upper()}"
    what = f"is {size:,} bytes, more than" if size is not None else "is larger than"
    return InputError(
        f"{name} {what} the {limit:,} bytes this server reads of a {fmt} file ({setting}): GDAL parses "
        f"{fmt} as one document, so a larger one would take memory and time in proportion",
        fix="deliver the data as a GeoPackage (.gpkg), which is read in batches whatever its size "
            "(e.g. ogr2ogr -f GPKG out.gpkg in.geojson), or split it; nothing was published")


def check_path(path: Path, fmt: str) -> None:
    """A vector source is one non-empty file with a suffix of its format."""
    if not path.exists():
        raise InputError("file not found", where=str(path), fix="check the path")
    if path.is_dir():
        raise InputError(f"a folder, not a {fmt} file", where=str(path), fix="name the file to load")
    if path.stat().st_size == 0:
        raise InputError("the file is empty (0 bytes)", where=str(path), fix="deliver the complete file")
    check_suffix(path, fmt)


def check_suffix(path: Path, fmt: str) -> None:
    if path.suffix.lower() not in SUFFIXES[fmt]:
        raise InputError(f"expected a {fmt} file ({', '.join(sorted(SUFFIXES[fmt]))}), got {path.suffix!r}",
                         where=str(path), fix="check the pipeline and the file")


def check_source(path: Path, fmt: str) -> None:
    """Refuse ``path`` before anything reads it whole (the run hashes it, then the readers open it):
    a vector file named for another format, a name that lies about the format, a GeoJSON or KML
    document over its limit, a hostile zip. Other faults are left to the readers to name."""
    if fmt in SUFFIXES and path.is_file():
        check_suffix(path, fmt)
    files = sorted(path.iterdir()) if path.is_dir() and fmt == "geotiff" else [path]
    limit = document_limit(fmt)
    for file in files:
        if not file.is_file() or file.suffix.lower() not in _CHECKED[fmt]:  # a loose .shp, a raster's other files
            continue
        if limit is not None and (size := file.stat().st_size) > limit:
            raise document_too_large(fmt, size, str(file))
        with file.open("rb") as fh:
            head = fh.read(HEAD)
        if head:  # an empty GeoTIFF: its reader says so
            check_content(head, fmt, str(file))
        if fmt == "shapefile" and file.suffix.lower() == ".zip":
            check_zip(file)


def check_zip(path: Path) -> None:
    """Refuse a zip by its directory: a member whose name is absolute or climbs out (``../``), a
    symbolic link, more members than ``GEOCLOUD_ETL_ZIP_MAX_MEMBERS``, more than
    ``GEOCLOUD_ETL_ZIP_MAX_BYTES`` uncompressed, or a member compressed more than
    ``GEOCLOUD_ETL_ZIP_MAX_RATIO`` times (a zip bomb). The member count is read from the end
    record before the directory is parsed, so a directory of millions of entries is not loaded."""
    settings = get_settings()
    fix = "deliver a plain zip of the shapefile's files (.shp, .shx, .dbf, .prj, .cpg); nothing was published"
    try:
        with path.open("rb") as fh:
            end = zipfile._EndRecData(fh)  # zipfile's own reader of the end record (zip64 too)
        if end and end[zipfile._ECD_ENTRIES_TOTAL] > settings.etl_zip_max_members:
            raise _too_many(path, end[zipfile._ECD_ENTRIES_TOTAL], settings.etl_zip_max_members, fix)
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
    except zipfile.BadZipFile as exc:
        raise InputError(f"not a readable zip archive ({exc})", where=str(path),
                         fix="deliver the complete file (re-zip or re-download it)") from None
    if len(members) > settings.etl_zip_max_members:
        raise _too_many(path, len(members), settings.etl_zip_max_members, fix)
    total = 0
    for info in members:
        name = info.filename
        where = f"{path}: member {name!r}"
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or (parts and parts[0].endswith(":")) or ".." in parts:
            raise InputError("the member's path is absolute or climbs out of the archive ('..')", where=where, fix=fix)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise InputError("the member is a symbolic link", where=where, fix=fix)
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > GRACE and ratio > settings.etl_zip_max_ratio:
            raise InputError(
                f"the member expands {ratio:,.0f} times ({info.compress_size:,} bytes to {info.file_size:,}), more "
                f"than the {settings.etl_zip_max_ratio:,} times data is compressed (GEOCLOUD_ETL_ZIP_MAX_RATIO): "
                "a zip bomb", where=where, fix=fix)
        total += info.file_size
        if total > settings.etl_zip_max_bytes:
            raise InputError(
                f"the members expand to more than {settings.etl_zip_max_bytes:,} bytes (GEOCLOUD_ETL_ZIP_MAX_BYTES; "
                f"{total:,} bytes up to this member)", where=where,
                fix="deliver a large layer as a GeoPackage (.gpkg), or split it; nothing was published")


def _too_many(path: Path, count: int, limit: int, fix: str) -> InputError:
    return InputError(f"the zip holds {count:,} members, more than {limit:,} (GEOCLOUD_ETL_ZIP_MAX_MEMBERS)",
                      where=str(path), fix=fix)


def check_vertices(geoms: np.ndarray, rows: np.ndarray, layer: str | None, path: Path, limit: int) -> None:
    """Refuse the batch's first feature with more vertices than ``limit`` (``GEOCLOUD_ETL_MAX_VERTICES``)."""
    counts = shapely.get_num_coordinates(geoms)
    over = np.flatnonzero(counts > limit)
    if not len(over):
        return
    first = over[0]
    others = f" ({len(over) - 1} more in the same batch)" if len(over) > 1 else ""
    where = f"layer {layer!r}, " if layer else ""
    raise InputError(
        f"{where}feature {rows[first]} has {counts[first]:,} vertices, more than the {limit:,} a feature may "
        f"have (GEOCLOUD_ETL_MAX_VERTICES){others}", where=str(path),
        fix="simplify the geometry or split it into parts (e.g. ogr2ogr -simplify, or QGIS Subdivide), "
            "and deliver the file again; nothing was published")
