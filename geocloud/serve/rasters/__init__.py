"""The raster layers (COGs): tiles, previews and statistics through titiler (``tiler``), OGC API -
Coverages (``coverages``) and OGC API - Tiles map tilesets (``maptiles``)."""
