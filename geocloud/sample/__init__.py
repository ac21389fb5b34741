"""A deterministic, Taichung-like sample city in the formats agencies really deliver.

``generate(folder, scale)`` writes every source the ETL pipelines load, plus ``manifest.json``
naming the source path for each pipeline, so a full load can be scripted, and under
``agency_layers`` the catalog entry and source file of each layer an agency registers over HTTP.
"""

import json
import shutil
from pathlib import Path

from geocloud.sample import addresses, bikes, rasters, vectors
from geocloud.sample.city import City

ADDRESSES_PER_BUILDING = 1.3


def generate(folder: Path, scale: float = 1.0, seed: int = 7, progress=lambda step: None) -> dict:
    """Write the sample city into ``folder`` and return the manifest."""
    if scale <= 0:
        raise ValueError("scale must be positive")
    city = City(seed)
    n_buildings = max(int(vectors.BUILDINGS_PER_SCALE * scale), 10)
    folder.mkdir(parents=True, exist_ok=True)
    sub = {name: folder / name for name in
           ("addresses", "roads", "buildings", "districts", "zoning", "landmarks", "topo", "satellite", "topo-sheets",
            "inspection-sites", "road-works", "bike-stations")}
    for path in sub.values():
        if path.exists():
            shutil.rmtree(path)
        path.mkdir()
    counts = {}
    progress("districts")
    counts["districts"] = vectors.districts(sub["districts"] / "districts.shp", city)
    progress("roads")
    counts["roads"] = vectors.roads(sub["roads"] / "roads.shp", city)
    progress("buildings")
    counts["buildings"] = vectors.buildings(sub["buildings"] / "buildings.shp", city, n_buildings)
    progress("addresses")
    addr = sub["addresses"] / "taichung-addresses.csv"
    counts["addresses"] = addresses.write(addr, city, int(n_buildings * ADDRESSES_PER_BUILDING))
    progress("zoning")
    counts["zoning"] = vectors.zoning(sub["zoning"] / "zoning.geojson", city)
    progress("landmarks")
    counts["landmarks"] = vectors.landmarks(sub["landmarks"] / "landmarks.csv", city, extra=int(40 * scale ** 0.5))
    progress("topo")
    counts["topo"] = vectors.topo(sub["topo"] / "topo-1000.gpkg", city)
    progress("restricted and internal layers")
    counts["inspection-sites"] = vectors.inspection_sites(sub["inspection-sites"] / "inspection-sites.csv", city,
                                                           max(20, int(60 * scale ** 0.5)))
    counts["road-works"] = vectors.road_works(sub["road-works"] / "road-works.csv", city, max(10, int(30 * scale ** 0.5)))
    progress("an agency layer")
    counts["bike-stations"] = bikes.write(sub["bike-stations"] / "youbike-stations.csv", city,
                                          max(20, int(120 * scale ** 0.5)))
    (sub["bike-stations"] / f"{bikes.LAYER_ID}.json").write_text(
        json.dumps(bikes.ENTRY, ensure_ascii=False, indent=2), encoding="utf-8")
    progress("rasters")
    rasters.satellite(sub["satellite"] / "satellite.tif", city)
    rasters.scanned_sheets(sub["topo-sheets"], city)
    manifest = {
        "generator": "geocloud sample generate",
        "seed": seed,
        "scale": scale,
        "crs": "EPSG:3826",
        "pipelines": {
            "districts": "districts/districts.shp",
            "roads": "roads/roads.shp",
            "buildings": "buildings/buildings.shp",
            "addresses": "addresses/taichung-addresses.csv",
            "zoning": "zoning/zoning.geojson",
            "landmarks": "landmarks/landmarks.csv",
            "topo": "topo/topo-1000.gpkg",
            "satellite": "satellite/satellite.tif",
            "topo-sheets": "topo-sheets",
            "inspection-sites": "inspection-sites/inspection-sites.csv",
            "road-works": "road-works/road-works.csv",
        },
        "agency_layers": {bikes.LAYER_ID: {"owner": "TCG-TRANS", "entry": f"bike-stations/{bikes.LAYER_ID}.json",
                                           "source": "bike-stations/youbike-stations.csv"}},
        "counts": counts,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    return manifest
