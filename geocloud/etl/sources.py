"""Open a vector source and read it in batches of attributes, geometries and row numbers.

Formats: Shapefile (loose or zipped), GeoPackage, GeoJSON (the legacy ``crs`` member is honoured
by GDAL), KML, all through pyogrio's Arrow stream; CSV with X/Y columns through pyarrow's
streaming CSV reader. Memory stays bounded by the batch size whatever the file size.
"""

import ctypes
import difflib
import hashlib
import queue
import threading
import zipfile
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyogrio
import shapely
from pyogrio.errors import DataLayerError, DataSourceError
from pyproj import CRS

from geocloud.etl import gdalread
from geocloud.etl.crs import identify
from geocloud.etl.encoding import RAW_TEXT, Encoding, decode_name, decode_raw, shapefile_encoding, text_encoding
from geocloud.etl.files import source_files
from geocloud.etl.limits import check_path, check_vertices
from geocloud.etl.pipeline import Source
from geocloud.config import get_settings
from geocloud.errors import InputError

BATCH = 65_536


@dataclass
class Batch:
    columns: dict[str, pa.Array]
    geometry: np.ndarray        # shapely geometries (None where missing)
    raw_xy: tuple[np.ndarray, np.ndarray] | None  # CSV: coordinates as read (NaN where not a number)
    rows: np.ndarray            # 1-based row (feature) numbers in the source
    source_layer: str | None = None
    unreadable: np.ndarray | None = None  # geometries GDAL could not parse as written (then fixed)
    wkb: pa.Array | None = None           # the source's WKB, reused when a geometry needs no change
    not_numbers: np.ndarray | None = None  # CSV: rows whose X or Y cell is empty or not a number


@dataclass
class OpenedSource:
    path: Path
    format: str
    encoding: Encoding | None
    crs: CRS
    crs_evidence: str
    columns: list[str]
    layers: list[str | None]
    feature_count: int | None
    geometry_types: dict[str | None, str] = field(default_factory=dict)
    layer_features: dict[str | None, int] = field(default_factory=dict)  # as the file declares them
    xy: tuple[str, str] | None = None
    # taken when the source is opened, and read from here by batches that may run in worker processes
    # (forked from a server started earlier, whose settings and module constants may be older)
    batch_size: int = field(default_factory=lambda: BATCH)
    max_vertices: int = field(default_factory=lambda: get_settings().etl_max_vertices)


def sha256(path: Path) -> str:
    """Checksum of a source: its files in name order."""
    digest = hashlib.sha256()
    for f in source_files(path):
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


class _DbfReader:
    """Random access to a .dbf, loose or inside a zip, without loading it whole. One handle stays
    open, so the chunks the encoding check reads in order are each read (and unzipped) once."""

    def __init__(self, handle, size: int):
        self._handle, self.size = handle, size

    def __call__(self, offset: int, length: int) -> bytes:
        self._handle.seek(offset)
        return self._handle.read(length)

    def close(self) -> None:
        self._handle.close()


CPG_BYTES = 256  # a .cpg names an encoding: more than this is not one


def _shapefile_sidecars(path: Path) -> tuple[_DbfReader, str | None, bool, int | None]:
    """(.dbf reader, .cpg text, has .prj, .shx size) of a loose or zipped shapefile; the caller
    closes the reader. A zip's members are read in place (``limits.check_zip`` has judged them)."""
    if path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                names = {Path(n).suffix.lower(): n for n in zf.namelist()}
                if ".shp" not in names or ".dbf" not in names:
                    raise InputError("the zip holds no complete shapefile (.shp and .dbf)", where=str(path))
                cpg = None
                if ".cpg" in names:
                    with zf.open(names[".cpg"]) as fh:
                        cpg = fh.read(CPG_BYTES).decode("ascii", "replace")
                shx = zf.getinfo(names[".shx"]).file_size if ".shx" in names else None
                dbf = zf.getinfo(names[".dbf"])
                # the member stays readable after the archive is closed (zipfile counts its users)
                return _DbfReader(zf.open(dbf), dbf.file_size), cpg, ".prj" in names, shx
        except zipfile.BadZipFile:
            raise InputError("not a readable zip file", where=str(path), fix="deliver the complete file") from None
    sidecar = {p.suffix.lower(): p for p in path.parent.glob(path.stem + ".*")}
    for needed in (".shx", ".dbf"):
        if needed not in sidecar:
            raise InputError(f"the shapefile's {needed} file is missing", where=str(path),
                             fix="deliver all of .shp, .shx, .dbf and .prj together")
    cpg = sidecar[".cpg"].read_text("ascii", "replace") if ".cpg" in sidecar else None
    dbf = sidecar[".dbf"]
    return _DbfReader(dbf.open("rb"), dbf.stat().st_size), cpg, ".prj" in sidecar, sidecar[".shx"].stat().st_size


def _check_record_counts(path: Path, dbf: _DbfReader, shx_size: int | None) -> None:
    """The .shx indexes one shape per .dbf record. GDAL reads as many features as the .dbf holds and
    says nothing of the shapes beyond them, so a .dbf from a shorter export loses features silently."""
    if shx_size is None:
        return
    shapes, records = (shx_size - 100) // 8, int.from_bytes(dbf(4, 4), "little")
    if shapes != records:
        raise InputError(f"the .shx lists {shapes} shapes but the .dbf holds {records} records: one of the files "
                         "is incomplete or comes from another export", where=str(path),
                         fix="deliver the .shp, .shx and .dbf of one complete export; nothing was published")


def _gdal_error(exc: Exception, path: Path) -> InputError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "object too complex/large" in text:  # GDAL's GeoJSON reader stops at a feature over 200 MB
        return InputError(f"a feature's GeoJSON is larger than GDAL reads as one object (200 MB unless "
                          f"OGR_GEOJSON_MAX_OBJ_SIZE says otherwise): {text.split(':', 1)[0]}", where=str(path),
                          fix="simplify or split the feature, or deliver the data as a GeoPackage (.gpkg); "
                              "nothing was published")
    return InputError(f"GDAL cannot read this file: {text}", where=str(path),
                      fix="check that the file is complete and not corrupt (re-export or re-download it)")


def open_source(path: Path, source: Source) -> OpenedSource:
    fmt = source.format
    check_path(path, fmt)
    if fmt == "csv":
        return _open_csv(path, source)
    encoding, has_prj = None, True
    if fmt == "shapefile":
        dbf, cpg, has_prj, shx_size = _shapefile_sidecars(path)
        with closing(dbf):
            encoding = shapefile_encoding(dbf, cpg, source.encoding, str(path))
            _check_record_counts(path, dbf, shx_size)
    elif source.encoding != "auto":
        encoding = Encoding(source.encoding, "set by the pipeline")
    try:
        available = [name for name, _ in pyogrio.list_layers(path)]
    except (DataSourceError, DataLayerError, OSError) as exc:
        raise _gdal_error(exc, path) from None
    layers: list[str | None] = list(source.layers) if source.layers else [None]
    for name in layers:
        if name is not None and name not in available:
            raise InputError(f"layer {name!r} not found; the file has: {', '.join(available)}", where=str(path),
                             fix="fix source.layers in the pipeline file")
    infos = {}
    for name in layers:
        try:
            infos[name] = pyogrio.read_info(path, layer=name, encoding=encoding.codec if encoding else None)
        except (DataSourceError, DataLayerError, OSError) as exc:
            raise _gdal_error(exc, path) from None
        except UnicodeDecodeError as exc:  # a .dbf field name is 10 bytes: a UTF-8 one may be cut mid-character
            raise InputError(f"a field name is not valid {encoding.label if encoding else 'text'} (bytes "
                             f"{exc.object[max(exc.start - 6, 0):exc.end]!r}): a .dbf field name holds 10 bytes, "
                             "and a longer one was cut in the middle of a character", where=str(path),
                             fix="rename the field to at most 10 bytes (3 Chinese characters in UTF-8, or ASCII) "
                                 "and export it again; nothing was published") from None
    first = infos[layers[0]]
    if first["crs"] and has_prj:
        crs, evidence = identify(first["crs"], str(path)), ".prj" if fmt == "shapefile" else "the file"
    elif source.crs:
        crs, evidence = identify(source.crs, str(path)), "the pipeline (source.crs)"
    else:
        raise InputError("the source declares no CRS (no .prj / crs member) and the pipeline sets none",
                         where=str(path), fix="add the .prj file, or set source.crs (e.g. EPSG:3826) in the pipeline")
    columns = sorted({c for info in infos.values() for c in info["fields"]})
    total = sum(max(info["features"], 0) for info in infos.values())
    if total == 0:
        raise InputError("the file holds no features", where=str(path), fix="check that the export is complete")
    return OpenedSource(path, fmt, encoding, crs, evidence, columns, layers, total,
                        {k: v["geometry_type"] for k, v in infos.items()},
                        {k: v["features"] for k, v in infos.items()})


def _open_csv(path: Path, source: Source) -> OpenedSource:
    encoding = text_encoding(path, source.encoding)
    with path.open(encoding=encoding.codec) as fh:
        header_line = fh.readline().lstrip("\ufeff").strip()
        if not fh.readline().strip():
            raise InputError("the CSV has a header but no data rows", where=str(path),
                             fix="check that the export is complete")
    header = [h.strip() for h in header_line.split(",")]
    xy = []
    for axis, names in (("x", source.x), ("y", source.y)):
        found = next((n for n in names if n in header), None)
        if found is None:
            others = [h for h in header if h not in (source.x or []) + (source.y or [])]
            close = difflib.get_close_matches(names[0], others, n=1, cutoff=0.5)
            hint = f" (the file has {close[0]!r}: a misspelt header?)" if close else ""
            raise InputError(f"coordinate column {' / '.join(names)} not found in the header{hint}",
                             where=f"{path}: line 1",
                             fix=f"rename the column to {names[0]!r}, or list the file's name in source.{axis}")
        xy.append(found)
    crs = identify(source.crs, str(path)) if source.crs else None
    if crs is None:
        raise InputError("a CSV carries no CRS and the pipeline sets none", where=str(path),
                         fix="set source.crs (e.g. EPSG:3826) in the pipeline")
    return OpenedSource(path, "csv", encoding, crs, "the pipeline (source.crs)", header, [None], None,
                        {None: "Point"}, xy=(xy[0], xy[1]))


def read_batches(src: OpenedSource) -> Iterator[Callable[[], Batch]]:
    """The source's batches in source order, as calls that each return one batch and may run on any
    thread, several at once. A shapefile is read at random: each call opens it at its own first
    feature (the .shx indexes them), so batches are read, decoded and parsed side by side. Other
    formats stream in order on a thread of their own, and the calls parse what it read."""
    if src.format == "shapefile":
        for start, size in _spans(src.feature_count, src.batch_size):
            yield partial(_shapefile_batch, src, start, size)
        return
    parse = _csv_batch if src.format == "csv" else _gdal_batch
    for raw in _read_ahead(_csv_records(src) if src.format == "csv" else _gdal_records(src)):
        yield partial(parse, src, raw)


HEAD_BATCHES = 2  # small first batches: the first comes back sooner, the second keeps the copy going


def _spans(count: int, size: int) -> Iterator[tuple[int, int]]:
    """(first feature, features) of each batch of a source read at random: ``size`` features, but
    a quarter of that for the first ``HEAD_BATCHES`` and, for the last ones, a quarter of what is
    left (no fewer than a quarter of ``size``). PostgreSQL copies nothing until the first batch is
    prepared, and the batches prepared side by side at the end end together, leaving it to copy what
    they delivered alone, on one core: at 65,536 buildings a batch, it started copying ~0.5 s after
    the workers did, and the last two batches had it work alone ~0.5 s."""
    quarter, start, number = size // 4, 0, 0
    while start < count:
        full = quarter if number < HEAD_BATCHES else size
        step = min(full, max(quarter, (count - start) // 4), count - start)
        yield start, step
        start, number = start + step, number + 1


@dataclass
class _Records:
    """A batch as the reader delivered it, before decoding and geometry parsing."""

    records: pa.RecordBatch
    offset: int                 # features before it in its layer
    layer: str | None = None
    geometry_column: str | None = None


def _read_ahead(records: Iterator[_Records], depth: int = 2) -> Iterator[_Records]:
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def pump():
        try:
            for item in records:
                if stop.is_set():
                    return
                buffer.put(item)
            buffer.put(done)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            buffer.put(exc)

    thread = threading.Thread(target=pump, name="geocloud-read", daemon=True)
    thread.start()
    try:
        while (item := buffer.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # let the reader finish its current batch and see the stop flag
            try:
                buffer.get(timeout=0.1)
            except queue.Empty:
                pass


@contextmanager
def _gdal_errors(path: Path):
    try:
        yield
    except InputError:
        raise
    except (DataSourceError, DataLayerError) as exc:
        raise _gdal_error(exc, path) from None
    except Exception as exc:  # GDAL read errors surface as assorted exception types
        if "pyogrio" in type(exc).__module__ or "GDAL" in str(exc) or "ogr" in str(exc).lower():
            raise _gdal_error(exc, path) from None
        raise


M_MXFAST = 1  # mallopt's parameter: the largest block size kept in fastbins


@cache
def _without_fastbins() -> None:
    """GDAL reads feature by feature, and frees small blocks by the hundred thousand into glibc's
    fastbins; the next free of a block of 64 KiB or more (the shapefile's index when it is closed,
    a buffer outgrown) walks them all to merge them (``malloc_consolidate``): 55-60 ms when a
    65,536-building batch's shapefile is closed alone. With fastbins off (``mallopt(M_MXFAST, 0)``,
    as glibc documents; its per-thread caches still serve small blocks first) blocks are merged as
    they are freed: a batch read in the run's own process costs ~10% less CPU (a fork-server worker,
    whose heap starts small, showed no measurable change). Once per process, before its first read;
    nothing where the C library has no ``mallopt``."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(M_MXFAST, 0)


def _raw_text(src: OpenedSource) -> bool:
    """Whether GDAL hands over the text as the file's bytes, to be decoded here: a Big5 shapefile's."""
    return src.format == "shapefile" and src.encoding is not None and src.encoding.codec == "cp950"


def _encoding_options(src: OpenedSource) -> dict:
    """How pyogrio is told the source's encoding: GDAL recodes the text, or leaves it raw."""
    if _raw_text(src):
        return RAW_TEXT
    return {"encoding": src.encoding.codec if src.encoding else None}


def _gdal_records(src: OpenedSource) -> Iterator[_Records]:
    _without_fastbins()
    for layer in src.layers:
        offset = 0
        with _gdal_errors(src.path), pyogrio.open_arrow(src.path, layer=layer, batch_size=src.batch_size, use_pyarrow=True,
                                                        **_encoding_options(src)) as (meta, reader):
            geometry = meta["geometry_name"] or "wkb_geometry"
            while (rb := _read_intact(reader, src, offset, src.batch_size, geometry, layer)) is not None:
                yield _Records(rb, offset, layer, geometry)
                offset += rb.num_rows


def _shapefile_batch(src: OpenedSource, start: int, size: int) -> Batch:
    _without_fastbins()
    with _gdal_errors(src.path), pyogrio.open_arrow(src.path, layer=src.layers[0], batch_size=size,
                                                    use_pyarrow=True, skip_features=start,
                                                    **_encoding_options(src)) as (meta, reader):
        geometry = meta["geometry_name"] or "wkb_geometry"
        rb = _read_intact(reader, src, start, size, geometry, src.layers[0])
        if rb is None:
            raise InputError(f"the shapefile ends before feature {start + 1}, which its index (.shx) lists",
                             where=str(src.path), fix="deliver the complete, uncorrupted file")
    if _raw_text(src):  # the batch's names are the file's bytes too: the attributes in order, then the geometry
        rb = rb.rename_columns([decode_name(name, meta["encoding"], src.encoding.codec) for name in meta["fields"]]
                               + [geometry])
    return _gdal_batch(src, _Records(rb, start, src.layers[0], geometry))


def _read_intact(reader: pa.RecordBatchReader, src: OpenedSource, offset: int, size: int, geometry: str,
                 layer: str | None) -> pa.RecordBatch | None:
    """The reader's next batch of up to ``size`` features (None at the end), refused if GDAL
    reported an error or a warning while reading it: either means a record was not read as written
    (see ``gdalread``)."""
    batch, failure, said = gdalread.read(reader.read_next_batch)
    delivered = batch.num_rows if batch is not None else 0
    # the stream gave up, or ended short of the features the file declares (a damaged GeoPackage page)
    stopped = isinstance(failure, OSError) or offset + delivered < src.layer_features.get(layer, -1) and \
        delivered < size
    if failure is not None and not stopped:
        raise failure
    if said or stopped:
        raise _data_lost(src, said or [str(failure)], batch, delivered, offset, geometry, layer, stopped)
    return batch


def _data_lost(src: OpenedSource, said: list[str], batch: pa.RecordBatch | None, delivered: int, offset: int,
               geometry: str, layer: str | None, stopped: bool) -> InputError:
    """Name the first record GDAL could not read: the first one it delivered without a geometry or
    with an empty one (a shapefile record past the end of the .shp, a GeoJSON point with one
    coordinate), else the one after the last it delivered when reading stopped (a GeoPackage
    stops at a damaged page). Features are numbered from 1 in each layer."""
    lost = []
    if delivered:
        with np.errstate(invalid="ignore"):
            geoms = shapely.from_wkb(batch.column(batch.schema.get_field_index(geometry)).to_numpy(
                zero_copy_only=False), on_invalid="ignore")
        lost = np.flatnonzero(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if len(lost):
        record = f"feature {offset + lost[0] + 1} (its geometry could not be read)"
    elif stopped or not delivered:
        record = f"feature {offset + delivered + 1} (reading stopped after feature {offset + delivered})"
    else:
        record = f"one of features {offset + 1}-{offset + delivered} (GDAL does not say which)"
    where = f"layer {layer!r}, " if layer else ""
    more = f" (and {len(said) - 1} more read errors after it)" if len(said) > 1 else ""
    return InputError(f"GDAL could not read every record; first bad record: {where}{record}: {said[0]}{more}",
                      where=str(src.path),
                      fix="the file is truncated or corrupt: deliver the complete file (re-export or re-download "
                          "it); nothing was published")


def _gdal_batch(src: OpenedSource, raw: _Records) -> Batch:
    rb = raw.records
    cols = {name: rb.column(i) for i, name in enumerate(rb.schema.names) if name != raw.geometry_column}
    if _raw_text(src):
        cols = {name: decode_raw(arr, src.encoding.codec) if pa.types.is_string(arr.type) else arr
                for name, arr in cols.items()}
    wkb_arrow = rb.column(rb.schema.get_field_index(raw.geometry_column))
    wkb = wkb_arrow.to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):  # NaN coordinates: named row by row in prepare, not warned here
        geoms = shapely.from_wkb(wkb, on_invalid="ignore")
    rows = np.arange(raw.offset + 1, raw.offset + rb.num_rows + 1)
    broken = shapely.is_missing(geoms) & wkb_arrow.is_valid().to_numpy(zero_copy_only=False)
    if broken.any():  # e.g. unclosed rings, common in hand-simplified files: close them
        geoms[broken] = shapely.from_wkb(wkb[broken], on_invalid="fix")
    check_vertices(geoms, rows, raw.layer, src.path, src.max_vertices)  # before the repairs whose cost grows with it
    return Batch(cols, geoms, None, rows, raw.layer, unreadable=broken, wkb=wkb_arrow)


def _csv_records(src: OpenedSource) -> Iterator[_Records]:
    read = pacsv.ReadOptions(block_size=8 << 20, encoding="utf8" if src.encoding.codec == "utf-8" else "cp950")
    convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in src.columns}, strings_can_be_null=False)
    parse = pacsv.ParseOptions(newlines_in_values=False)
    offset = 1  # the header is line 1; data rows count from 2
    try:
        for rb in pacsv.open_csv(src.path, read_options=read, convert_options=convert, parse_options=parse):
            yield _Records(rb, offset)
            offset += rb.num_rows
    except pa.ArrowInvalid as exc:
        raise InputError(f"the CSV cannot be parsed: {exc}", where=str(src.path),
                         fix="check the delimiter (comma) and that every row has the header's number of columns") from None


def _csv_batch(src: OpenedSource, raw: _Records) -> Batch:
    rb = raw.records
    cols = {name: rb.column(i) for i, name in enumerate(rb.schema.names)}
    rows = np.arange(raw.offset + 1, raw.offset + rb.num_rows + 1)
    x, x_bad = _numbers(cols[src.xy[0]])
    y, y_bad = _numbers(cols[src.xy[1]])
    geoms = shapely.points(x, y)
    geoms[x_bad | y_bad | ~np.isfinite(x) | ~np.isfinite(y)] = None
    return Batch(cols, geoms, (x, y), rows, not_numbers=x_bad | y_bad)


def _numbers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Text to float; returns values (NaN where bad) and a mask of non-numeric cells. ``nan`` and
    ``inf`` (as spreadsheets and numpy write them) are numbers here, to be refused by name later."""
    text = pc.utf8_trim_whitespace(arr)
    ok = pc.match_substring_regex(text, r"^[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|nan|inf|infinity)$",
                                  ignore_case=True)
    ok = pc.fill_null(ok, False)
    values = pc.cast(pc.if_else(ok, text, pa.scalar(None, pa.string())), pa.float64())
    return values.to_numpy(zero_copy_only=False), ~ok.to_numpy(zero_copy_only=False)
