"""A tile cache on disk, in the shared data directory, so every worker on every machine reuses it.

Each cached tile records the id of the newest publish/rollback event of its layers when it was
rendered. A tile is served from the cache only if no later event of those layers changed an area
that touches the tile: an ETL publish or a rollback invalidates exactly the tiles inside its
changed bounding box, and unchanged areas stay cached. Nothing needs deleting, so a worker that
has not yet seen an event can never resurrect a stale tile.
"""

import os
import struct
import tempfile
from pathlib import Path

from geocloud.config import get_settings
from geocloud.serve.state import Snapshot

HEADER = struct.Struct("<Q")


def root() -> Path:
    return get_settings().data_path / "tile-cache"


def tile_path(*parts) -> Path:
    return root().joinpath(*map(str, parts))


def read(path: Path, snap: Snapshot, layers, bounds_crs84) -> tuple[bytes, int] | None:
    """(tile bytes, render token) when cached and still valid."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(raw) < HEADER.size:
        return None
    (token,) = HEADER.unpack_from(raw)
    if snap.changed_since(token, layers, bounds_crs84):
        return None
    return raw[HEADER.size:], token


def write(path: Path, token: int, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tile-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(HEADER.pack(token) + data)
    os.replace(tmp, path)  # atomic: readers see the old tile or the new one
