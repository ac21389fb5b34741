"""bench/etl: load the sample city's buildings (1,000,000 at --scale 500) into PostGIS with geocloud's
ETL and with `ogr2ogr -f PostgreSQL` (PG_USE_COPY=YES, same target CRS, GiST index) in the same run,
on the same file and server, and print features per second and peak memory for both.

    .venv/bin/python bench/etl.py [--scale 500]
"""

import argparse
import json
import shutil
import sys

import psycopg

from common import ROOT, sample_city, scratch_database, timed

from geocloud import db


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=500.0, help="sample city scale (500 = 1,000,000 buildings)")
    args = ap.parse_args()
    ogr2ogr = shutil.which("ogr2ogr")
    if not ogr2ogr:
        sys.exit("ogr2ogr not found: apt-get install gdal-bin (scripts/dev does)")
    city = sample_city(args.scale)
    shp = city / "buildings" / "buildings.shp"
    n = json.loads((city / "manifest.json").read_text())["counts"]["buildings"]
    results = {}
    with scratch_database() as url:
        db.upgrade(url)
        wall, rss, out = timed([sys.executable, "-m", "geocloud", "etl", "run", "buildings", str(shp), "--json"],
                               env={"GEOCLOUD_DATABASE_URL": url, "GEOCLOUD_DATA_DIR": str(ROOT / ".geocloud" / "bench" / "data")})
        report = json.loads(out)
        assert report["status"] == "published" and report["counts"]["loaded"]["buildings"] == n, report["counts"]
        results["geocloud etl run"] = (wall, rss, report["timings"])
    with scratch_database() as url:
        info = psycopg.conninfo.conninfo_to_dict(url)
        pg = " ".join(f"{k}={v}" for k, v in info.items())
        wall, rss, _ = timed([ogr2ogr, "-f", "PostgreSQL", f"PG:{pg}", str(shp), "-nln", "buildings",
                              "-t_srs", "EPSG:3826", "-nlt", "PROMOTE_TO_MULTI", "-lco", "GEOMETRY_NAME=geom",
                              "-lco", "SPATIAL_INDEX=GIST", "--config", "PG_USE_COPY", "YES"])
        with psycopg.connect(url) as conn:
            loaded = conn.execute("SELECT count(*) FROM buildings").fetchone()[0]
        assert loaded == n, loaded
        results[f"ogr2ogr (GDAL {timed([ogr2ogr, '--version'])[2].split(',')[0].split()[-1]})"] = (wall, rss, None)
    print(f"\nbuildings: {n:,} features, Shapefile (Big5 DBF), EPSG:3826 -> PostGIS EPSG:3826 with GiST index")
    print(f"{'tool':<28}{'seconds':>10}{'features/s':>14}{'peak memory':>14}")
    for tool, (wall, rss, _) in results.items():
        print(f"{tool:<28}{wall:>10.1f}{n / wall:>14,.0f}{rss / 2**20:>11,.0f} MB")
    ours, peer = list(results.values())
    print(f"\ngeocloud / ogr2ogr throughput: {peer[0] / ours[0]:.2f}x   (geocloud includes validation, "
          "unique-key index, diff and publish)")
    print(f"geocloud stage timings (s): {ours[2]}")


if __name__ == "__main__":
    main()
