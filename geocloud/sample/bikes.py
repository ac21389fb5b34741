"""An agency layer of the sample city: the Transportation Bureau's public-bicycle (YouBike 2.0)
stations, as the bureau shares them: a CSV with the open-data columns (場站代號, 場站名稱, 場站區域,
地址, 總停車格) and WGS84 緯度/經度, and the catalog entry the bureau registers over ``/manage``.

Stations stand at the corners of the sample city's road grid, one at City Hall, all inside its
extent; the same seed gives the same file.
"""

import csv
from pathlib import Path

import numpy as np
from pyproj import Transformer

from geocloud.address.taichung import DISTRICTS
from geocloud.sample.city import CITY_HALL, EXTENT, City

LAYER_ID = "bike_stations"
COLUMNS = ["場站代號", "場站名稱", "場站區域", "地址", "總停車格", "緯度", "經度"]
CITY_HALL_STATION = ("500601001", "YouBike2.0_臺中市政府")
ENTRY = {
    "id": LAYER_ID,
    "title": {"zh-TW": "公共自行車租賃站 (YouBike 2.0)", "en": "Public bicycle stations (YouBike 2.0)"},
    "description": {"zh-TW": "臺中市公共自行車 YouBike 2.0 租賃站位置、所在行政區、地址與總停車格數。",
                    "en": "Taichung's YouBike 2.0 public-bicycle stations: location, district, address and docks."},
    "kind": "vector",
    "geometry": "Point",
    "crs": "EPSG:4326",  # the bureau's file gives WGS84 緯度/經度, as the YouBike open data does
    "key": "station_id",
    "fields": [
        {"name": "station_id", "type": "text", "required": True, "title": {"zh-TW": "場站代號", "en": "Station code"}},
        {"name": "name", "type": "text", "required": True, "title": {"zh-TW": "場站名稱", "en": "Station name"}},
        {"name": "district", "type": "text", "title": {"zh-TW": "場站區域", "en": "District"}},
        {"name": "address", "type": "text", "title": {"zh-TW": "地址", "en": "Address"}},
        {"name": "docks", "type": "integer", "title": {"zh-TW": "總停車格", "en": "Docks"}},
    ],
    "access": {"level": "public"},
    "update_frequency": "daily",
    "keywords": ["公共自行車", "YouBike", "微笑單車", "bicycle"],
    "contact": {"organization": {"zh-TW": "臺中市政府交通局", "en": "Taichung City Transportation Bureau"},
                "name": "公共運輸及捷運工程處", "email": "traffic@taichung.gov.tw", "phone": "+886-4-22289111"},
    "zooms": {"min": 10, "max": 22},
}


def write(path: Path, city: City, count: int) -> int:
    """``count`` stations (at least 1) as the bureau's UTF-8 CSV; returns how many were written."""
    rng = np.random.default_rng(city.seed + 61)
    streets = [r for r in city.roads[1:] if r.direction == (0.0, 1.0)], \
        [r for r in city.roads[1:] if r.direction == (1.0, 0.0)]
    corners = [(v, h) for v in streets[0] for h in streets[1]
               if EXTENT[0] < v.start[0] < EXTENT[2] and EXTENT[1] < h.start[1] < EXTENT[3]]
    picked = rng.choice(len(corners), size=min(max(count, 1), len(corners)) - 1, replace=False)
    to_wgs84 = Transformer.from_crs("EPSG:3826", "EPSG:4326", always_xy=True)
    rows = [(*CITY_HALL_STATION, _district(city, *CITY_HALL), "臺灣大道三段99號", 40, *CITY_HALL)]
    for n, i in enumerate(sorted(picked), 2):
        v, h = corners[i]
        x, y = v.start[0] + rng.uniform(-15, 15), h.start[1] + rng.uniform(-15, 15)
        corner = ("東北", "西北", "東南", "西南")[int(rng.integers(4))]
        rows.append((f"500601{n:03d}", f"YouBike2.0_{v.name.removesuffix('路')}{h.name.removesuffix('路')}口",
                     _district(city, x, y), f"{v.name}/{h.name}口({corner}側)",
                     int(rng.choice([10, 14, 18, 20, 24, 30, 36, 40, 60])), x, y))
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh, lineterminator="\r\n")
        out.writerow(COLUMNS)
        for *fields, docks, x, y in rows:
            lon, lat = to_wgs84.transform(x, y)
            out.writerow([*fields, docks, f"{lat:.6f}", f"{lon:.6f}"])
    return len(rows)


def _district(city: City, x: float, y: float) -> str:
    return DISTRICTS[int(city.district_of(np.array([x]), np.array([y]))[0])][1]
