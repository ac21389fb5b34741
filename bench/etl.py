"""bench/etl: load the sample city's buildings (1,000,000 at --scale 500) into PostGIS with geocloud's
ETL and with `ogr2ogr -f PostgreSQL` (PG_USE_COPY=YES, same target CRS, GiST index) in the same run,
on the same file and server, and print features per second and peak memory for both.

Each tool loads into a fresh database after a CHECKPOINT, the two alternate for --rounds pairs, and
the median pair is printed: a single load varies by several percent with what the server is still
writing from the previous one. Where the server runs on this machine, its CPU seconds are printed
too: they show how the work splits between the loader and PostgreSQL.

    .venv/bin/python bench/etl.py [--scale 500] [--rounds 3]
"""

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

import psycopg

from common import ROOT, sample_city, scratch_database, timed

from geocloud import db


def server_cpu(url: str):
    """A function returning the CPU seconds used so far by the PostgreSQL server's processes
    (exited backends included), or None when the server's files are not readable from here."""
    with psycopg.connect(url) as conn:
        data_dir = conn.execute("SHOW data_directory").fetchone()[0]
    try:
        pid = int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")

    def used() -> float:
        total = 0
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split() + [str(pid)]:
            try:
                fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if child == str(pid) else 0)
        return total / tick
    return used


def load(cmd: list[str], env: dict, count) -> tuple[float, int, float | None, str]:
    """(wall seconds, peak memory, server CPU seconds, stdout) of one load into a fresh database."""
    with scratch_database() as url:
        db.upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        cpu = server_cpu(url)
        before = cpu() if cpu else None
        wall, rss, out = timed([part.replace("{url}", url) for part in cmd], env={**env, "GEOCLOUD_DATABASE_URL": url})
        spent = cpu() - before if cpu else None
        count(url, out)
    return wall, rss, spent, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=500.0, help="sample city scale (500 = 1,000,000 buildings)")
    ap.add_argument("--rounds", type=int, default=3, help="alternated geocloud/ogr2ogr pairs (median printed)")
    args = ap.parse_args()
    ogr2ogr = shutil.which("ogr2ogr")
    if not ogr2ogr:
        sys.exit("ogr2ogr not found: apt-get install gdal-bin (scripts/dev does)")
    city = sample_city(args.scale)
    shp = city / "buildings" / "buildings.shp"
    n = json.loads((city / "manifest.json").read_text())["counts"]["buildings"]
    gdal = timed([ogr2ogr, "--version"])[2].split(",")[0].split()[-1]

    def ours_loaded(url, out):
        report = json.loads(out)
        assert report["status"] == "published" and report["counts"]["loaded"]["buildings"] == n, report["counts"]

    def peer_loaded(url, out):
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM buildings").fetchone()[0] == n

    ours_cmd = [sys.executable, "-m", "geocloud", "etl", "run", "buildings", str(shp), "--json"]
    peer_cmd = [ogr2ogr, "-f", "PostgreSQL", "PG:{url}", str(shp), "-nln", "buildings", "-t_srs", "EPSG:3826",
                "-nlt", "PROMOTE_TO_MULTI", "-lco", "GEOMETRY_NAME=geom", "-lco", "SPATIAL_INDEX=GIST",
                "--config", "PG_USE_COPY", "YES"]
    env = {"GEOCLOUD_DATA_DIR": str(ROOT / ".geocloud" / "bench" / "data")}
    pairs = []
    for _ in range(args.rounds):
        ours = load(ours_cmd, env, ours_loaded)
        peer = load(peer_cmd, {}, peer_loaded)
        pairs.append((ours, peer))
        print(f"  pair: geocloud {ours[0]:.2f} s, ogr2ogr {peer[0]:.2f} s ({peer[0] / ours[0]:.2f}x)", flush=True)
    ratios = [peer[0] / ours[0] for ours, peer in pairs]
    ours, peer = pairs[ratios.index(statistics.median_low(ratios))]

    print(f"\nbuildings: {n:,} features, Shapefile (Big5 DBF), EPSG:3826 -> PostGIS EPSG:3826 with GiST index")
    print(f"median of {args.rounds} alternated pairs")
    print(f"{'tool':<28}{'seconds':>10}{'features/s':>14}{'peak memory':>14}{'server CPU s':>15}")
    for tool, (wall, rss, spent, _) in (("geocloud etl run", ours), (f"ogr2ogr (GDAL {gdal})", peer)):
        cpu = f"{spent:>15.1f}" if spent is not None else f"{'n/a':>15}"
        print(f"{tool:<28}{wall:>10.1f}{n / wall:>14,.0f}{rss / 2**20:>11,.0f} MB{cpu}")
    print(f"\ngeocloud / ogr2ogr throughput: {peer[0] / ours[0]:.2f}x   (geocloud includes validation, a stored "
          "Web Mercator geometry, the unique-key index, diff and publish)")
    print(f"geocloud stage timings (s): {json.loads(ours[3])['timings']}")


if __name__ == "__main__":
    main()
