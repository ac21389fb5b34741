"""geocloud: a city GIS office's geodata sharing server.

Data flows one way: sources -> ``etl`` -> PostGIS -> ``serve`` -> clients. The layer catalog
(``catalog``) is the single source of truth every other part derives from.
"""

__version__ = "0.1.0"
