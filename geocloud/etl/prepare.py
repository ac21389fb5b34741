"""Turn one batch of source rows into rows of a catalog layer, ready for COPY.

Fields are mapped from the source's (often DBF-truncated) names, coerced to the catalog's types
(numbers stored as text become numbers), enriched by the pipeline's named transform, and checked;
geometries are reprojected, repaired, promoted to the layer's type and checked against the
extent. Everything is vectorized over the batch (shapely 2, pyarrow compute).
"""

import difflib
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from pyproj import Transformer

from geocloud.catalog.models import Layer
from geocloud.etl.crs import Reprojection, extent_problem, reprojection
from geocloud.etl.pipeline import Output, Pipeline, Rules
from geocloud.etl.quality import Quality
from geocloud.etl.sources import Batch, OpenedSource
from geocloud.etl.wkb import MULTI_OF, as_layer_type, header_types
from geocloud.errors import InputError

ARROW_TYPES = {"text": pa.string(), "integer": pa.int32(), "bigint": pa.int64(), "double": pa.float64(),
               "boolean": pa.bool_(), "date": pa.date32(), "timestamp": pa.timestamp("s")}
NUMBER = {"integer": r"^[+-]?\d+(\.0*)?$", "bigint": r"^[+-]?\d+(\.0*)?$",
          "double": r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"}
BASE_TYPE = {"Point": 1, "MultiPoint": 1, "LineString": 2, "MultiLineString": 2, "Polygon": 3, "MultiPolygon": 3}
SHAPELY_IDS = {0: "Point", 1: "LineString", 2: "LinearRing", 3: "Polygon", 4: "MultiPoint",
               5: "MultiLineString", 6: "MultiPolygon", 7: "GeometryCollection"}
# base kind (1 point, 2 line, 3 polygon) of each shapely type id, shifted by one for "missing" (-1)
BASE_OF_TYPE_ID = np.array([0, 1, 2, 0, 3, 1, 2, 3, 0])
BIG5_GAP_LITERALS = ("■", "□", "∮", "?")
BIG5_GAP_CHARS = "|".join(map(re.escape, BIG5_GAP_LITERALS))  # a pattern of them, for Arrow's regex match
NONFINITE = ("a coordinate is NaN or infinite (not a place); row rejected: correct or remove the point or "
             "vertex in the source and export it again")
UNDECODABLE = "\ufffd"  # what a decoder puts where the bytes were not text in the source's encoding


@dataclass(frozen=True)
class FieldMap:
    """catalog field -> the source column found for it (None: absent), and the named transform."""

    columns: dict[str, str | None]
    transform: Callable | None = None


def resolve_fields(output: Output, layer: Layer, src: OpenedSource, quality: Quality,
                   transform: Callable | None = None) -> FieldMap:
    found: dict[str, str | None] = {}
    for target, names in output.fields.items():
        names = [names] if isinstance(names, str) else names
        hit = next((n for n in names if n in src.columns), None)
        if hit is None:
            close = difflib.get_close_matches(names[0], src.columns, n=1, cutoff=0.5)
            hint = f"; the file has {close[0]!r} (misspelt?)" if close else ""
            required = layer.field(target).required and output.transform is None
            if required or (output.transform == "addresses" and target in {"number", "road", "district_code"}):
                raise InputError(
                    f"missing required field {target!r}: no column {' / '.join(names)} in the file{hint}",
                    where=str(src.path),
                    fix=f"rename the column, or map the file's name to {target!r} under outputs.fields in the pipeline")
            quality.note_file("warning", f"column {' / '.join(names)} absent: field {target!r} left empty")
        found[target] = hit
    return FieldMap(found, transform)


def check_geometry_type(src: OpenedSource, layer: Layer, split: bool) -> None:
    """Refuse a whole file whose declared geometry type cannot go into the layer."""
    if split:
        return
    for source_layer, gtype in src.geometry_types.items():
        base = (gtype or "").replace(" Z", "").replace("25D", "")
        if base in BASE_TYPE and BASE_TYPE[base] != BASE_TYPE[layer.geometry]:
            raise InputError(
                f"wrong geometry type: the file holds {base} features but layer {layer.id!r} holds {layer.geometry}",
                where=str(src.path), fix="check that the right file is given to the right pipeline")


def coerce(arr: pa.Array, ftype: str) -> tuple[pa.Array, np.ndarray]:
    """Cast to the catalog type; returns the values and a mask of cells that could not be cast."""
    target = ARROW_TYPES[ftype]
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if ftype == "text":
        if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
            if pa.types.is_floating(arr.type):  # 146246.0 -> "146246"
                as_int = pc.cast(arr, pa.int64(), safe=False)
                whole = pc.fill_null(pc.equal(pc.cast(as_int, pa.float64()), arr), False)
                arr = pc.if_else(whole, pc.cast(as_int, pa.string()), pc.cast(arr, pa.string()))
            else:
                arr = pc.cast(arr, pa.string())
        arr = pc.utf8_trim_whitespace(arr)
        arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
        return arr, np.zeros(len(arr), dtype=bool)
    if ftype in NUMBER and (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        text = pc.utf8_trim_whitespace(arr)
        empty = pc.fill_null(pc.equal(text, ""), True)
        ok = pc.fill_null(pc.match_substring_regex(text, NUMBER[ftype]), False)
        bad = ~(ok.to_numpy(zero_copy_only=False) | empty.to_numpy(zero_copy_only=False))
        clean = pc.if_else(ok, text, pa.scalar(None, pa.string()))
        as_float = pc.cast(clean, pa.float64())
        return pc.cast(as_float, target, safe=False), bad
    try:
        return pc.cast(arr, target), np.zeros(len(arr), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            return coerce(pc.cast(arr, pa.string()), ftype)
        return _cast_cells(arr, target)


def _cast_cells(text: pa.Array, target: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Text cast value by value (e.g. dates, where one cell reads 尚未決定): what casts is kept, the
    rest is empty and marked bad. Each distinct value is tried once."""
    text = pc.utf8_trim_whitespace(text)
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    good = []
    for value in pc.unique(text).drop_null().to_pylist():
        try:
            pa.scalar(value).cast(target)
            good.append(value)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    ok = pc.is_in(text, value_set=pa.array(good, pa.string()))
    bad = (pc.is_valid(text).to_numpy(zero_copy_only=False) & ~ok.to_numpy(zero_copy_only=False))
    return pc.cast(pc.if_else(ok, text, pa.scalar(None, pa.string())), target), bad


def _attributes(batch: Batch, fmap: FieldMap, output: Output, layer: Layer, src: OpenedSource, quality: Quality,
                reject: np.ndarray) -> dict[str, pa.Array]:
    n = len(batch.rows)
    mapped = {t: (batch.columns[s] if s else pa.nulls(n, pa.string())) for t, s in fmap.columns.items()}
    if fmap.transform:
        mapped = fmap.transform(mapped, batch.rows, quality, reject)
    out = {}
    for f in layer.fields:
        arr = mapped.get(f.name, pa.nulls(n, pa.string()))
        values, bad = coerce(arr, f.type)
        src_name = fmap.columns.get(f.name) or f.name
        if bad.any():
            samples = ", ".join(sorted({str(v) for v in pc.filter(arr, pa.array(bad)).to_pylist()[:3]}))
            severity = "error" if f.required else "warning"
            quality.note(severity, f"field {f.name!r} (column {src_name}): not a {f.type} ({samples}); "
                                   + ("row rejected" if f.required else "left empty"), batch.rows[bad])
            if f.required:
                reject |= bad
        if f.required:
            missing = pc.is_null(values).to_numpy(zero_copy_only=False) & ~bad
            quality.note("error", f"required field {f.name!r} (column {src_name}) is empty; row rejected",
                         batch.rows[missing])
            reject |= missing
        if f.type == "text" and len(values):
            text = _text_bytes(values)
            if any(c.encode() in text for c in BIG5_GAP_LITERALS):
                gaps = pc.fill_null(pc.match_substring_regex(values, BIG5_GAP_CHARS), False).to_numpy(
                    zero_copy_only=False)
                quality.note("warning", f"field {f.name!r}: placeholder for a character missing from Big5 "
                                        "(■ or ?); fix the source text", batch.rows[gaps])
            if UNDECODABLE.encode() in text:
                broken = pc.fill_null(pc.match_substring(values, UNDECODABLE), False).to_numpy(zero_copy_only=False)
                quality.note("warning", f"field {f.name!r} (column {src_name}): bytes that are not valid "
                                        f"{src.encoding.label if src.encoding else 'text'}, loaded as {UNDECODABLE} "
                                        "(a character cut by the field width?); fix the source text",
                             batch.rows[broken])
        out[f.name] = values
    return out


def _text_bytes(values: pa.Array) -> bytes:
    """The bytes of a text column's values, all in one (and perhaps some beyond them): a character
    absent from these is in no value, so the search value by value can be skipped."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    return b"".join(c.buffers()[2].to_pybytes() for c in chunks if c.buffers()[2] is not None)


def _twd97_bounds(bounds: np.ndarray, layer: Layer) -> np.ndarray:
    """``bounds`` (in the layer's CRS) in EPSG:3826 metres, where the extent check draws its boxes:
    a layer stored in WGS84 (an agency's lat/lon CSV) is checked as a TWD97 one is."""
    if layer.srid == 3826 or not len(bounds):
        return bounds
    to_twd97 = Transformer.from_crs(layer.crs, "EPSG:3826", always_xy=True)
    return np.column_stack([*to_twd97.transform(bounds[:, 0], bounds[:, 1]),
                            *to_twd97.transform(bounds[:, 2], bounds[:, 3])])


def _geometries(batch: Batch, layer: Layer, reproject: Reprojection, rules: Rules, src: OpenedSource,
                quality: Quality, reject: np.ndarray, drop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Checked geometries, and a mask of those changed here (the rest keep the source's WKB)."""
    geoms = batch.geometry
    rewritten = np.ones(len(geoms), dtype=bool) if batch.wkb is None or reproject.steps else \
        header_types(batch.wkb) == 0
    if batch.unreadable is not None:
        rewritten |= batch.unreadable
    if batch.unreadable is not None and batch.unreadable.any():
        fixed = batch.unreadable & ~shapely.is_missing(geoms)
        quality.repaired += int(fixed.sum())
        quality.note("warning", "malformed geometry (e.g. an unclosed ring) repaired", batch.rows[fixed])
    empty = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    if batch.raw_xy is not None:  # CSV: say which coordinate cells were not numbers, or not finite ones
        not_numbers = batch.not_numbers
        quality.note("error", f"coordinate columns {src.xy[0]}/{src.xy[1]} are empty or not numbers; row rejected",
                     batch.rows[not_numbers])
        nonfinite = ~not_numbers & ~(np.isfinite(batch.raw_xy[0]) & np.isfinite(batch.raw_xy[1]))
        quality.note("error", f"coordinate columns {src.xy[0]}/{src.xy[1]}: {NONFINITE}", batch.rows[nonfinite])
        reject |= not_numbers | nonfinite
        empty &= ~(not_numbers | nonfinite)
    quality.note("warning", "empty geometry dropped", batch.rows[empty])
    quality.dropped_empty += int(empty.sum())
    drop |= empty
    live = ~(reject | drop)
    type_ids = shapely.get_type_id(geoms)
    wanted = BASE_TYPE[layer.geometry]
    wrong = live & (BASE_OF_TYPE_ID[np.clip(type_ids, -1, 7) + 1] != wanted)
    for tid in np.unique(type_ids[wrong]):
        quality.note("error", f"wrong geometry type {SHAPELY_IDS.get(int(tid), tid)} for layer {layer.id!r} "
                              f"({layer.geometry}); row rejected", batch.rows[wrong & (type_ids == tid)])
    reject |= wrong
    live = ~(reject | drop)
    # GEOS finds a polygon with a NaN or infinite coordinate invalid: where the polygons stay in the
    # source's CRS, their validity is taken once, here, and only the invalid ones are searched
    valid = None
    if wanted == 3 and not reproject.steps:
        valid = np.zeros(len(geoms), dtype=bool)
        valid[live] = shapely.is_valid(geoms[live])
    suspect = live if valid is None else live & ~valid
    if not np.isfinite(shapely.get_coordinates(geoms[suspect])).all():  # which rows: only when some are bad
        coords, owner = shapely.get_coordinates(geoms[suspect], return_index=True)
        nonfinite = np.zeros(len(geoms), dtype=bool)
        nonfinite[np.flatnonzero(suspect)[np.unique(owner[~np.isfinite(coords).all(axis=1)])]] = True
        quality.note("error", f"geometry: {NONFINITE}", batch.rows[nonfinite])
        reject |= nonfinite
        live = ~(reject | drop)

    raw_bounds = bounds = shapely.bounds(geoms[live])
    geoms = geoms.copy()
    if reproject.steps:
        geoms[live] = reproject.geometries(geoms[live])
        bounds = shapely.bounds(geoms[live])
    bounds = _twd97_bounds(bounds, layer)
    for corner in ((0, 1), (2, 3)):
        problem = extent_problem(raw_bounds[:, corner[0]], raw_bounds[:, corner[1]],
                                 bounds[:, corner[0]], bounds[:, corner[1]], src.crs, rules.extent)
        if problem:
            mask, why = problem
            rows = batch.rows[live][mask][:5]
            raise InputError(f"{why} (rows {', '.join(map(str, rows))}{' …' if mask.sum() > 5 else ''})",
                             where=str(src.path), fix="declare the right CRS in the source or in the pipeline")

    if wanted == 3:
        invalid = live & ~(shapely.is_valid(geoms) if valid is None else valid)
        if invalid.any():
            if rules.on_invalid_geometry == "reject":
                quality.note("error", "invalid geometry; row rejected", batch.rows[invalid])
                reject |= invalid
            else:
                fixed = shapely.make_valid(geoms[invalid])
                polys = [shapely.multipolygons([p for p in shapely.get_parts(g) if shapely.get_type_id(p) == 3])
                         for g in fixed]
                geoms[invalid] = polys
                rewritten |= invalid
                quality.repaired += int(invalid.sum())
                quality.note("warning", "invalid geometry repaired (make_valid)", batch.rows[invalid])
                emptied = invalid & shapely.is_empty(geoms)
                quality.note("error", "geometry empty after repair; row rejected", batch.rows[emptied])
                reject |= emptied
    live = ~(reject | drop)
    type_ids = shapely.get_type_id(geoms)
    if layer.geometry.startswith("Multi"):  # the source's WKB is wrapped on output; changed ones here
        single = live & rewritten & np.isin(type_ids, [0, 1, 3])
        if single.any():
            maker = {1: shapely.multipoints, 2: shapely.multilinestrings, 3: shapely.multipolygons}[wanted]
            geoms[single] = maker(geoms[single][:, None].tolist())
    else:
        multi = live & np.isin(type_ids, [4, 5, 6])
        several = multi & (shapely.get_num_geometries(geoms) > 1)
        quality.note("error", f"multi-part geometry where layer {layer.id!r} holds single {layer.geometry}; "
                              "row rejected", batch.rows[several])
        reject |= several
        one = multi & ~several
        geoms[one] = shapely.get_geometry(geoms[one], 0)
        rewritten |= one
    return geoms, rewritten


def _geometry_column(batch: Batch, geoms: np.ndarray, rewritten: np.ndarray, keep: np.ndarray,
                     layer: Layer) -> pa.Array:
    """WKB of the kept geometries: the source's own bytes where the geometry is unchanged."""
    changed = rewritten[keep]
    encoded = shapely.to_wkb(shapely.force_2d(geoms[keep][changed]), byte_order=1)
    if batch.wkb is None or changed.all():
        return pa.array(encoded, pa.binary())
    target = {"Point": 1, "LineString": 2, "Polygon": 3}.get(layer.geometry) or MULTI_OF[BASE_TYPE[layer.geometry]]
    kept_wkb = batch.wkb.filter(pa.array(keep))
    column = as_layer_type(kept_wkb, header_types(kept_wkb), target)
    if changed.any():
        column = pc.replace_with_mask(column, pa.array(changed), pa.array(encoded, pa.binary()))
    return column


def prepare(batch: Batch, output: Output, fmap: FieldMap, layer: Layer, reproject: Reprojection, rules: Rules,
            src: OpenedSource, quality: Quality) -> tuple[pa.Table, np.ndarray]:
    """The batch's accepted rows as a table of the layer's fields plus ``geom`` (WKB), typed as the
    staging table's columns (``ARROW_TYPES``) so that it can be sent as binary COPY, and their row
    numbers. Batches are prepared independently (on several threads); duplicate keys, which depend
    on every batch before, are left to ``drop_duplicate_keys``."""
    n = len(batch.rows)
    reject, drop = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    attrs = _attributes(batch, fmap, output, layer, src, quality, reject)
    geoms, rewritten = _geometries(batch, layer, reproject, rules, src, quality, reject, drop)
    quality.rejected += int(reject.sum())
    keep = ~(reject | drop)
    mask = pa.array(keep)
    out = {f.name: pc.filter(attrs[f.name], mask).cast(ARROW_TYPES[f.type]) for f in layer.fields}
    out["geom"] = _geometry_column(batch, geoms, rewritten, keep, layer)
    quality.loaded[layer.id] += int(keep.sum())
    return pa.table(out), batch.rows[keep]


def route(batch: Batch, pipeline: Pipeline, quality: Quality):
    """(layer, sub-batch) pairs: the whole batch, or its parts by feature code."""
    if not pipeline.split:
        yield pipeline.outputs[0].layer, batch
        return
    codes = batch.columns.get(pipeline.split.field)
    if codes is None:
        raise InputError(f"split field {pipeline.split.field!r} not found in layer {batch.source_layer!r}",
                         fix="fix split.field in the pipeline file")
    codes = np.array([None if c is None else str(c) for c in codes.to_pylist()], dtype=object)
    targets = np.array([pipeline.split.codes.get(c) for c in codes], dtype=object)
    unknown = targets == None  # noqa: E711 - elementwise
    for code in set(codes[unknown]):
        n = int((codes[unknown] == code).sum())
        quality.skipped_codes[str(code)] += n
        quality.note("warning", f"feature code {code} is not in the pipeline's code table; skipped",
                     batch.rows[unknown & (codes == code)])
    for lid in dict.fromkeys(t for t in targets if t is not None):
        mask = targets == lid
        pm = pa.array(mask)
        yield lid, Batch({k: v.filter(pm) for k, v in batch.columns.items()}, batch.geometry[mask], None,
                         batch.rows[mask], batch.source_layer,
                         None if batch.unreadable is None else batch.unreadable[mask],
                         None if batch.wkb is None else batch.wkb.filter(pm))


@dataclass(frozen=True)
class BatchPreparer:
    """Prepares one batch of a run: reads it, routes it to its layers and prepares each part. It holds
    everything that takes, and pickles, so that it can run on a worker thread or in a worker process;
    the reprojection is built from the CRSs' WKT once per process."""

    pipeline: Pipeline
    src: OpenedSource
    layers: dict[str, Layer]
    fmaps: dict[str, FieldMap]
    source_wkt: str
    target_wkts: dict[str, str]  # layer id -> its CRS

    def __call__(self, read: Callable[[], Batch]) -> tuple[Quality, list[tuple[str, pa.Table, np.ndarray]]]:
        """The batch's own quality report and, for each layer it feeds, its prepared table and rows."""
        batch, own = read(), Quality()
        own.read = len(batch.rows)
        outputs = {o.layer: o for o in self.pipeline.outputs}
        return own, [(lid, *prepare(part, outputs[lid], self.fmaps[lid], self.layers[lid],
                                    reprojection(self.source_wkt, self.target_wkts[lid]), self.pipeline.rules,
                                    self.src, own))
                     for lid, part in route(batch, self.pipeline, own)]


def drop_duplicate_keys(table: pa.Table, rows: np.ndarray, layer: Layer, rules: Rules, quality: Quality,
                        seen: set) -> pa.Table:
    """Drop (keep-first) or reject rows whose natural key an earlier row holds; called on every
    prepared batch in source order, with the keys seen so far."""
    keys = table.column(layer.key).to_pylist()
    fresh = set(keys)
    if len(fresh) == len(keys) and seen.isdisjoint(fresh):  # the usual case, without a loop per row
        seen |= fresh
        return table
    dup = np.zeros(len(keys), dtype=bool)
    for i, k in enumerate(keys):
        if k in seen:
            dup[i] = True
        else:
            seen.add(k)
    quality.duplicates += int(dup.sum())
    quality.loaded[layer.id] -= int(dup.sum())
    if rules.on_duplicate_key == "keep-first":
        quality.note("warning", f"duplicate {layer.key!r}: later row skipped, first kept", rows[dup])
    else:
        quality.note("error", f"duplicate natural key {layer.key!r}; row rejected", rows[dup])
        quality.rejected += int(dup.sum())
    return table.filter(pa.array(~dup))
