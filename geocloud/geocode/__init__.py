"""門牌 geocoding against the live address layer: addresses to coordinates and back."""

from geocloud.geocode.match import Options, match
from geocloud.geocode.query import NotAnAddress, Parts, parse
from geocloud.geocode.service import BadRequest, as_tgos, geocode_one, geocode_rows, read_csv, reverse, write_csv

__all__ = ["BadRequest", "NotAnAddress", "Options", "Parts", "as_tgos", "geocode_one", "geocode_rows", "match",
           "parse", "read_csv", "reverse", "write_csv"]
