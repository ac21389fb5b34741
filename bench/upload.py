"""bench/upload: an agency's upload-to-live over HTTP against the CLI ETL, on the same 100,000-feature
GeoPackage (the sample city's building outlines, as an agency layer of the Urban Development
Bureau), into the same PostGIS server.

HTTP: `PUT /manage/layers/{id}` (the entry), `POST .../data` (the file as a streamed body; the
server writes it to disk and runs the ETL), `POST .../publish`, as the bureau's editor, against one
`geocloud serve` process. CLI: `geocloud etl run {id} FILE` (the entry registered beforehand with
`geocloud layers add`, untimed). Each load goes into a fresh database after a CHECKPOINT; the two
alternate for --pairs pairs and the median pair is printed with the HTTP path's overhead, the CLI's
peak memory, and the server process's resident memory before and at its peak during the upload
(sampled every 20 ms): the body streams to disk, so the peak is the ETL's working set, not the file.

    .venv/bin/python bench/upload.py [--features 100000] [--pairs 3]
"""

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pyarrow as pa
import pyogrio
import yaml
from capacity import _server_pid as server_pid
from common import ROOT, free_port, median_pair, scratch_database, server, timed

from geocloud import db
from geocloud.sample import vectors
from geocloud.sample.city import City

LAYER = "udb_buildings"
OWNER = "TCG-UDB"
ENTRY = {
    "id": LAYER,
    "title": {"zh-TW": "都發局建物現況調查", "en": "Urban Development Bureau building survey"},
    "description": {"zh-TW": "都市發展局建物現況調查之建物輪廓、樓層數、構造與用途。",
                    "en": "Building outlines from the Urban Development Bureau's survey: floors, structure, use."},
    "kind": "vector",
    "geometry": "MultiPolygon",
    "key": "building_id",
    "fields": [
        {"name": "building_id", "type": "text", "required": True, "title": {"zh-TW": "建物編號", "en": "Building ID"}},
        {"name": "floors", "type": "integer", "title": {"zh-TW": "樓層數", "en": "Floors"}},
        {"name": "structure", "type": "text", "title": {"zh-TW": "構造別", "en": "Structure"}},
        {"name": "usage", "type": "text", "title": {"zh-TW": "用途", "en": "Use"}},
        {"name": "district_code", "type": "text", "title": {"zh-TW": "行政區", "en": "District code"}},
    ],
    "access": {"level": "internal"},
    "update_frequency": "yearly",
    "contact": {"organization": {"zh-TW": "臺中市政府都市發展局", "en": "Taichung City Urban Development Bureau"},
                "name": "都市計畫科", "email": "udb@taichung.gov.tw", "phone": "+886-4-22289111"},
    "zooms": {"min": 13, "max": 22},
}


def geopackage(features: int) -> Path:
    """The sample city's ``features`` building outlines as a GeoPackage with the bureau's column
    names (made once into .geocloud/bench/)."""
    folder = ROOT / ".geocloud" / "bench" / f"upload-{features}"
    path = folder / "buildings.gpkg"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    print(f"writing {features:,} building outlines into {path} ...", flush=True)
    shp = folder / "buildings.shp"
    vectors.buildings(shp, City(7), features)
    meta, table = pyogrio.read_arrow(shp, encoding="cp950")
    names = {"BLDG_ID": "建物編號", "樓層數": "樓層數", "構造別": "構造別", "用途": "用途", "行政區": "行政區"}
    columns = {names[n]: table.column(n) for n in names}
    pyogrio.write_arrow(pa.table({**columns, "geom": table.column(meta["geometry_name"] or "wkb_geometry")}),
                        path, layer="buildings", driver="GPKG", geometry_name="geom", geometry_type="Polygon",
                        crs="EPSG:3826")
    for part in folder.glob("buildings.*"):
        if part.suffix != ".gpkg":
            part.unlink()
    return path


def fresh(url: str) -> None:
    """Migrate and sync agencies into a fresh database, then CHECKPOINT (as bench/etl does)."""
    from geocloud.access import agencies
    from geocloud.catalog import core_catalog

    db.upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        agencies.sync(conn, core_catalog(), "bench")


def checkpoint(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def etl_seconds(url: str) -> float:
    """How long the ETL run itself took (its record's start to finish), without what came around it."""
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT extract(epoch FROM finished_at - started_at)::float FROM geocloud.etl_runs "
                            "ORDER BY id DESC LIMIT 1").fetchone()[0]


def rss(pid: int) -> int:
    """Resident memory of ``pid`` and its children, in bytes (the server may fork workers)."""
    total = 0
    for p in [str(pid), *Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]:
        try:
            total += next(int(x.split()[1]) for x in Path(f"/proc/{p}/status").read_text().splitlines()
                          if x.startswith("VmRSS:")) * 1024
        except (OSError, StopIteration):
            pass
    return total


class Sampler(threading.Thread):
    """The highest resident memory of a process tree while it runs, sampled every 20 ms."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, threading.Event()

    def run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, rss(self.pid))
            time.sleep(0.02)


def over_http(gpkg: Path, features: int) -> dict:
    from geocloud.access import keys

    with scratch_database("geocloud_bench_upload") as url:
        fresh(url)
        with psycopg.connect(url, autocommit=True) as conn:
            key = {"X-API-Key": keys.create(conn, OWNER, "bench-editor", "editor", None, None)}
        port = free_port()
        data = ROOT / ".geocloud" / "bench" / "data-upload"
        env = {"GEOCLOUD_DATABASE_URL": url, "GEOCLOUD_DATA_DIR": str(data)}
        cmd = [sys.executable, "-m", "geocloud", "serve", "--port", str(port)]
        with server(cmd, port, "/conformance", env, log_name="upload-server") as base, httpx.Client(
                base_url=base, headers=key, timeout=600) as client:
            pid = server_pid(port)
            client.get("/manage/layers").raise_for_status()  # the management routes warmed, as a running server is
            checkpoint(url)
            before = rss(pid)
            sampler = Sampler(pid)
            sampler.start()
            t0 = time.perf_counter()
            client.put(f"/manage/layers/{LAYER}", json=ENTRY).raise_for_status()
            with gpkg.open("rb") as body:
                r = client.post(f"/manage/layers/{LAYER}/data?wait=600", content=body,
                                headers={"Content-Type": "application/geopackage+sqlite3"})
            if r.status_code != 200:
                sys.exit(f"upload failed: {r.status_code} {r.text[:2000]}")
            published = client.post(f"/manage/layers/{LAYER}/publish")
            wall = time.perf_counter() - t0
            sampler.done.set()
            sampler.join()
            report = r.json()
            assert report["status"] == "published" and report["counts"]["loaded"] == {LAYER: features}, report
            assert published.json()["state"] == "live", published.text
            streaming = body_only(client, pid, gpkg)
        etl = etl_seconds(url)
    return {"wall": wall, "etl": etl, "rss_before": before, "rss_peak": max(sampler.peak, before),
            "streaming": streaming, "stages": report["timings"]}


def body_only(client: httpx.Client, pid: int, gpkg: Path) -> int:
    """How much the server's resident memory grows while the whole body streams to disk and nothing
    else runs: the same file claimed as a CSV, which is refused (422) only once it is all on disk."""
    before = rss(pid)
    sampler = Sampler(pid)
    sampler.start()
    with gpkg.open("rb") as body:
        r = client.post(f"/manage/layers/{LAYER}/data?format=csv", content=body)
    sampler.done.set()
    sampler.join()
    assert r.status_code == 422 and r.json()["code"] == "InvalidSource", r.text
    return max(sampler.peak, before) - before


def over_cli(gpkg: Path, features: int) -> dict:
    with scratch_database("geocloud_bench_upload") as url:
        fresh(url)
        env = {"GEOCLOUD_DATABASE_URL": url, "GEOCLOUD_DATA_DIR": str(ROOT / ".geocloud" / "bench" / "data-upload"),
               "GEOCLOUD_OPERATOR": "bench"}
        entry = gpkg.parent / f"{LAYER}.yml"
        entry.write_text(yaml.safe_dump(ENTRY, allow_unicode=True, sort_keys=False), encoding="utf-8")
        timed([sys.executable, "-m", "geocloud", "layers", "add", str(entry), "--owner", OWNER], env)
        checkpoint(url)
        wall, peak, out = timed([sys.executable, "-m", "geocloud", "etl", "run", LAYER, str(gpkg), "--json"], env)
        report = json.loads(out)
        assert report["status"] == "published" and report["counts"]["loaded"] == {LAYER: features}, report
        etl = etl_seconds(url)
    return {"wall": wall, "etl": etl, "rss_peak": peak, "stages": report["timings"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", type=int, default=100_000, help="building outlines in the GeoPackage")
    ap.add_argument("--pairs", type=int, default=3, help="alternated HTTP/CLI pairs (median printed)")
    args = ap.parse_args()
    gpkg = geopackage(args.features)
    mb = 1024 * 1024
    print(f"{args.features:,} features, {gpkg.stat().st_size / mb:.1f} MB GeoPackage; {args.pairs} alternated pairs",
          flush=True)
    walls = []

    def http():
        walls.append(("http", (m := over_http(gpkg, args.features))["wall"]))
        print(f"  HTTP {m['wall']:.1f} s", flush=True)
        return m

    def cli():
        walls.append(("cli", (m := over_cli(gpkg, args.features))["wall"]))
        print(f"  CLI  {m['wall']:.1f} s", flush=True)
        return m

    h, c = median_pair(http, cli, args.pairs, key=lambda a, b: a["wall"] / b["wall"])
    print(f"\nupload-to-live of {args.features:,} features (median of {args.pairs} pairs by ratio)")
    print(f"  HTTP (PUT entry, POST data, publish)  {h['wall']:7.1f} s   of which the ETL run {h['etl']:.1f} s")
    print(f"  CLI  (geocloud etl run)                {c['wall']:7.1f} s   of which the ETL run {c['etl']:.1f} s; "
          f"peak memory {c['rss_peak'] / mb:.0f} MB")
    print(f"  HTTP overhead                          {100 * (h['wall'] / c['wall'] - 1):+7.1f} %   (target: at most +10 %)")
    print(f"  server resident memory: {h['rss_before'] / mb:.0f} MB before, {h['rss_peak'] / mb:.0f} MB at the peak "
          f"of the upload-to-live (+{(h['rss_peak'] - h['rss_before']) / mb:.0f} MB: the ETL's working set); "
          f"+{h['streaming'] / mb:.1f} MB while the {gpkg.stat().st_size / mb:.0f} MB body alone streams to disk")
    print(f"  around the ETL run: HTTP {h['wall'] - h['etl']:.1f} s (upload, requests), "
          f"CLI {c['wall'] - c['etl']:.1f} s (process start, imports)")
    print("  ETL stages, HTTP / CLI (s): " + ", ".join(f"{k} {v:.1f}/{c['stages'].get(k, 0):.1f}"
                                                    for k, v in h["stages"].items()))
    print(f"  every run: {', '.join(f'{k} {v:.1f} s' for k, v in walls)}")


if __name__ == "__main__":
    main()
