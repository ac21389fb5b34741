"""bench/geocode: single-address latency (p50/p95) and batch throughput (rows/s) of geocloud's
門牌 geocoder on the sample city's address layer at full Taichung size (about 1.3 million points
at --scale 500). No peer runs here: TGOS's locator is an outside service; the targets are p95
under 20 ms for one address and at least 2,000 rows/s in batch.

    .venv/bin/python bench/geocode.py [--scale 500] [--singles 500] [--batch 20000]
"""

import argparse
import http.client
import random
import sys
import time
import urllib.parse

import psycopg

from common import free_port, load_city, sample_city, scratch_database, server

from geocloud import db


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=500.0)
    ap.add_argument("--singles", type=int, default=500)
    ap.add_argument("--batch", type=int, default=20_000)
    args = ap.parse_args()
    city = sample_city(args.scale)
    rng = random.Random(7)
    with scratch_database() as url:
        db.upgrade(url)
        t0 = time.perf_counter()
        load_city(url, city, ["districts", "zoning", "addresses"])
        load_seconds = time.perf_counter() - t0
        with psycopg.connect(url) as conn:
            total = conn.execute("SELECT count(*) FROM live.addresses").fetchone()[0]
            sample = [r[0] for r in conn.execute(
                "SELECT raw_address FROM live.addresses TABLESAMPLE SYSTEM (5) LIMIT %s",
                (args.singles + args.batch,)).fetchall()]
        rng.shuffle(sample)
        # queries as people type them: with and without county/district, full-width digits as in the source
        singles = [("臺中市" if i % 2 else "") + q for i, q in enumerate(sample[:args.singles])]
        port = free_port()
        with server([sys.executable, "-m", "geocloud", "serve", "--port", str(port)], port, "/conformance",
                    env={"GEOCLOUD_DATABASE_URL": url}, log_name="geocode"):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            latencies, kinds = [], {}
            for q in singles[:20]:  # warm up
                conn.request("GET", "/geocode?" + urllib.parse.urlencode({"address": q}))
                conn.getresponse().read()
            for q in singles:
                t = time.perf_counter()
                conn.request("GET", "/geocode?" + urllib.parse.urlencode({"address": q}))
                body = conn.getresponse().read()
                latencies.append((time.perf_counter() - t) * 1000)
                kind = body.split(b'"match_type":"', 1)[1].split(b'"', 1)[0].decode() if b'"match_type":"' in body else "?"
                kinds[kind] = kinds.get(kind, 0) + 1
            latencies.sort()
            rows = sample[args.singles:args.singles + args.batch]
            csv_body = ("編號,地址\n" + "".join(f"{i},{q}\n" for i, q in enumerate(rows))).encode("utf-8")
            t = time.perf_counter()
            conn.request("POST", "/geocode/batch?column=%E5%9C%B0%E5%9D%80", body=csv_body,
                         headers={"Content-Type": "text/csv"})
            resp = conn.getresponse()
            out = resp.read().decode("utf-8").splitlines()
            batch_seconds = time.perf_counter() - t
            assert resp.status == 200 and len(out) == len(rows) + 1, (resp.status, len(out))
            exact = sum(1 for line in out[1:] if ",exact," in line)
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    print(f"\naddress layer: {total:,} points (loaded through the ETL in {load_seconds:.0f} s)")
    print(f"single address over HTTP, {len(singles)} queries, one client: p50 {pick(0.5):.1f} ms, "
          f"p95 {pick(0.95):.1f} ms (target p95 < 20 ms); match types {kinds}")
    print(f"batch POST /geocode/batch, {len(rows):,} rows: {batch_seconds:.1f} s = {len(rows) / batch_seconds:,.0f} rows/s "
          f"(target >= 2,000); exact {exact:,}")


if __name__ == "__main__":
    main()
