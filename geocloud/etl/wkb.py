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
    wrap = types == single
    if single is None or not wrap.any():
        return wkb
    prefix = b"\x01" + target_type.to_bytes(4, "little") + (1).to_bytes(4, "little")
    wrapped = pc.binary_join_element_wise(pa.scalar(prefix, pa.binary()), wkb, b"")
    return wrapped if wrap.all() else pc.if_else(pa.array(wrap), wrapped, wkb)  # if_else copies every value
