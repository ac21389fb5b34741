"""Vector tiles (OGC API - Tiles, TileJSON) from PostGIS, their cache, the tile matrix sets, and the
WMTS capabilities of the raster layers."""
