"""A tile cache on disk, in the shared data directory (or GEOCLOUD_TILE_CACHE_DIR), so every worker
on every machine reuses it.

Each cached tile records the id of the newest publish/rollback event of its layers when it was
rendered. A tile is served from the cache only if no later event of those layers changed an area
that touches the tile: an ETL publish or a rollback invalidates exactly the tiles inside its
changed bounding box, and unchanged areas stay cached. Nothing needs deleting, so a worker that
has not yet seen an event can never resurrect a stale tile; nor does a node serve a tile another
node rendered after an event this node has not seen yet (its replica is behind): it renders its own.

Several nodes may write the same tile at once: each writes a temporary file in the tile's folder and
renames it over the tile (atomic on one file system, NFS included), and a tile records its length,
so a file cut short (a writer killed, a full disk) is a miss, never a torn tile.
"""

import os
import struct
import tempfile

from geocloud.config import get_settings
from geocloud.serve.state import Snapshot

HEADER = struct.Struct("<QQ")  # render token, tile length


_root: tuple[object, str] | None = None


def root() -> str:
    """The cache folder (remembered per settings object: a warm tile should not rebuild paths)."""
    global _root
    settings = get_settings()
    if _root is None or _root[0] is not settings:
        _root = (settings, str(settings.tile_cache_dir or os.path.join(settings.data_path, "tile-cache")))
    return _root[1]


def tile_path(*parts) -> str:
    return os.path.join(root(), *map(str, parts))


def read(path: str, snap: Snapshot, layers, bounds_crs84) -> tuple[bytes, int] | None:
    """(tile bytes, render token) when cached and still valid. ``bounds_crs84`` is a function giving
    the tile's bounds: they are needed only when one of the layers changed since the tile was made.

    A hit is one small read of a local or shared file: cheap enough to do on the event loop, which
    keeps a warm tile to a few tens of microseconds of Python."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(fd).st_size
        raw = os.read(fd, size)
        while len(raw) < size and (more := os.read(fd, size - len(raw))):
            raw += more
    finally:
        os.close(fd)
    if len(raw) < HEADER.size:
        return None
    token, length = HEADER.unpack_from(raw)
    if length != len(raw) - HEADER.size or token > snap.token or snap.changed_since(token, layers, bounds_crs84):
        return None
    return raw[HEADER.size:], token


def write(path: str, token: int, data: bytes) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tile-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(HEADER.pack(token, len(data)) + data)
    os.replace(tmp, path)  # atomic: readers see the old tile or the new one
