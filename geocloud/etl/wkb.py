"""WKB for COPY, straight from the source's WKB where the geometry needs no change.

Most features of a delivery are already valid, in the storage CRS and of the layer's type (or its
single-part form). Re-encoding a million such geometries through GEOS costs seconds; reusing the
source's bytes (wrapped as a one-part Multi geometry where the layer needs it) is a vectorized
byte operation. PostGIS gives plain WKB the SRID of the column it is copied into.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MULTI_OF = {1: 4, 2: 5, 3: 6}


def header_types(wkb: pa.BinaryArray) -> np.ndarray:
    """The WKB geometry type of each value when little-endian and 2D (1..6), else 0."""
    head = pc.binary_slice(wkb, 0, 5).cast(pa.binary())
    offsets = np.frombuffer(head.buffers()[1], dtype=np.int32)[head.offset: head.offset + len(head) + 1]
    data = np.frombuffer(head.buffers()[2], dtype=np.uint8)
    out = np.zeros(len(head), dtype=np.int64)
    full = np.diff(offsets) == 5
    starts = offsets[:-1][full]
    little = data[starts] == 1
    types = data[starts + 1].astype(np.int64) | (data[starts + 2].astype(np.int64) << 8) | \
        (data[starts + 3].astype(np.int64) << 16) | (data[starts + 4].astype(np.int64) << 24)
    ok = little & (types >= 1) & (types <= 6)
    idx = np.flatnonzero(full)
    out[idx[ok]] = types[ok]
    return out


def as_layer_type(wkb: pa.BinaryArray, types: np.ndarray, target_type: int) -> pa.BinaryArray:
    """WKB of type ``target_type``: values of that type as they are, values of its single-part form
    wrapped into a one-part Multi geometry; other values must not be passed."""
    wkb = wkb.cast(pa.binary())
    single = next((k for k, v in MULTI_OF.items() if v == target_type), None)
    if single is None or not (types == single).any():
        return wkb
    prefix = b"\x01" + target_type.to_bytes(4, "little") + (1).to_bytes(4, "little")
    wrapped = pc.binary_join_element_wise(pa.scalar(prefix, pa.binary()), wkb, b"")
    return pc.if_else(pa.array(types == single), wrapped, wkb)


class _Unexpected(Exception):
    """A value the walk below does not read (big-endian, 3D or measured, a collection, cut short)."""


def _coordinate_runs(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(byte offset of each run of XY pairs, pairs in the run) of little-endian 2D WKB values laid
    out in ``data`` from ``starts`` to ``ends``, found by walking their headers for all values at once
    (one step per part or ring, over every value that has it)."""
    runs_at, runs_of = [], []

    def u32(pos: np.ndarray) -> np.ndarray:
        if len(pos) and pos.max() + 4 > len(data):
            raise _Unexpected
        return (data[pos].astype(np.int64) | data[pos + 1].astype(np.int64) << 8 |
                data[pos + 2].astype(np.int64) << 16 | data[pos + 3].astype(np.int64) << 24)

    def run(at: np.ndarray, count: np.ndarray) -> np.ndarray:
        runs_at.append(at)
        runs_of.append(count)
        return at + 16 * count

    def geometry(pos: np.ndarray, allowed: tuple[int, ...]) -> np.ndarray:
        if len(pos) and ((pos.max() + 9 > len(data)) or (data[pos] != 1).any()):
            raise _Unexpected
        types, end = u32(pos + 1), np.empty_like(pos)
        for kind in np.unique(types):
            if kind not in allowed:
                raise _Unexpected
            sel = types == kind
            at = pos[sel]
            if kind == 1:
                end[sel] = run(at + 5, np.ones(len(at), dtype=np.int64))
            elif kind == 2:
                end[sel] = run(at + 9, u32(at + 5))
            elif kind == 3:
                end[sel] = rings(at + 5)
            else:
                parts, cursor = u32(at + 5), at + 9
                if parts.max(initial=0) * 9 > len(data):
                    raise _Unexpected
                for k in range(int(parts.max(initial=0))):
                    more = parts > k
                    cursor[more] = geometry(cursor[more], (int(kind) - 3,))
                end[sel] = cursor
        return end

    def rings(pos: np.ndarray) -> np.ndarray:
        count, cursor = u32(pos), pos + 4
        if count.max(initial=0) * 4 > len(data):
            raise _Unexpected
        for r in range(int(count.max(initial=0))):
            more = count > r
            cursor[more] = run(cursor[more] + 4, u32(cursor[more]))
        return cursor

    if not (geometry(starts, (1, 2, 3, 4, 5, 6)) == ends).all():
        raise _Unexpected
    return (np.concatenate(runs_at) if runs_at else np.zeros(0, np.int64),
            np.concatenate(runs_of) if runs_of else np.zeros(0, np.int64))


def transform_xy(wkb: pa.BinaryArray, transform) -> pa.BinaryArray | None:
    """The same WKB values with every XY pair passed through ``transform(x, y) -> (x, y)`` (e.g. a
    pyproj Transformer's), written over a copy of the bytes: no geometry objects are made, so a
    batch costs about what the transformation itself does. None where the values are not all
    little-endian 2D points, lines and polygons (single or multi), for the caller to take the long way."""
    wkb = wkb.cast(pa.binary())
    if wkb.null_count:
        return None
    offsets = np.frombuffer(wkb.buffers()[1], dtype=np.int32)[wkb.offset: wkb.offset + len(wkb) + 1].astype(np.int64)
    data = np.frombuffer(wkb.buffers()[2], dtype=np.uint8).copy() if len(wkb) else np.zeros(0, np.uint8)
    try:
        at, count = _coordinate_runs(data, offsets[:-1], offsets[1:])
    except _Unexpected:
        return None
    # the bytes of every XY pair, marked by +1 where a run starts and -1 where it ends
    edge = np.zeros(len(data) + 1, dtype=np.int8)
    edge[at] += 1
    edge[at + 16 * count] -= 1
    inside = np.cumsum(edge[:-1], dtype=np.int8).view(bool)
    xy = data[inside].view("<f8").reshape(-1, 2)
    x, y = transform(xy[:, 0], xy[:, 1])
    data[inside] = np.column_stack([x, y]).view(np.uint8).ravel()
    return pa.Array.from_buffers(pa.binary(), len(wkb), [None, wkb.buffers()[1], pa.py_buffer(data)], offset=wkb.offset)
