"""bench/ratelimit: what counting requests for the rate limit costs geocloud's hot path.

Every request is counted (``geocloud/access/ratelimit.py``): in the worker's memory under a lock,
and a background thread adds the counts to PostGIS in one statement every 0.5 s, so limits hold
across workers. This compares geocloud as shipped with geocloud whose counting is removed
in-process (``bench/patched.py no_rate_limit``), both with limits out of reach, on the street-scale
bbox page and on a cheap request (``/conformance``), where a fixed cost per request weighs most.

The machine may be shared: each side's figure is the server's own CPU milliseconds per request
(user + system, from /proc), besides requests a second; the two servers alternate in pairs and the
median pair is kept. A direct timing of ``ratelimit.hit`` (microseconds a call) is printed too.

    .venv/bin/python bench/ratelimit.py [--scale 50] [--requests 400] [--pairs 5]
"""

import argparse
import os
import sys
import threading
import time

from common import (
    cpu_seconds,
    free_port,
    geocloud_cmd,
    load,
    load_city,
    median_pair,
    sample_city,
    scratch_database,
    server,
)

from geocloud import db

STREET = "/collections/buildings/items?limit=100&bbox=120.6440,24.1590,120.6500,24.1650"
CHEAP = "/conformance?f=json"


def measured(base, path: str, requests: int) -> dict:
    before = cpu_seconds(base.pid)
    found = load(base, [path], requests)
    return {**found, "cpu_ms": (cpu_seconds(base.pid) - before) * 1000 / requests}


def hit_microseconds(calls: int = 100_000) -> float:
    """One ``ratelimit.hit`` in this process, the flusher thread running (its database is this bench's)."""
    from geocloud.access import ratelimit

    ratelimit.hit("ip:127.0.0.1")
    t = time.perf_counter()
    for _ in range(calls):
        ratelimit.hit("ip:127.0.0.1")
    return (time.perf_counter() - t) / calls * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=50.0)
    ap.add_argument("--requests", type=int, default=400, help="requests per side of a pair")
    ap.add_argument("--pairs", type=int, default=5)
    args = ap.parse_args()
    city = sample_city(args.scale)
    with scratch_database() as url:
        db.upgrade(url)
        load_city(url, city, ["buildings"])
        env = {"GEOCLOUD_DATABASE_URL": url}
        a_port, b_port = free_port(), free_port()
        with server(geocloud_cmd(a_port), a_port, "/conformance", env=env, log_name="ratelimit-shipped") as shipped, \
                server(geocloud_cmd(b_port, "no_rate_limit"), b_port, "/conformance", env=env,
                       log_name="ratelimit-none") as none:
            rows = {}
            for label, path, n in (("street bbox page", STREET, args.requests),
                                   ("/conformance", CHEAP, 10 * args.requests)):  # 10x: CPU time counts in 10 ms ticks
                for base in (shipped, none):
                    load(base, [path], 50)  # warm up
                rows[label] = median_pair(lambda path=path, n=n: measured(shipped, path, n),
                                          lambda path=path, n=n: measured(none, path, n), args.pairs,
                                          key=lambda a, b: a["cpu_ms"] / b["cpu_ms"])
        os.environ["GEOCLOUD_DATABASE_URL"] = url
        micro = hit_microseconds()
        threading.Event().wait(0.6)  # let the flusher write once before the database goes
    print(f"\nrate-limit counting, geocloud as shipped vs counting removed; one process each, 4 clients, "
          f"{args.requests} requests a side ({10 * args.requests} of /conformance), median of {args.pairs} alternated pairs")
    print(f"{'request':<20}{'shipped cpu ms/req':>20}{'none cpu ms/req':>17}{'cost':>8}{'shipped req/s':>15}"
          f"{'none req/s':>12}")
    for label, (a, b) in rows.items():
        print(f"{label:<20}{a['cpu_ms']:>20.3f}{b['cpu_ms']:>17.3f}{a['cpu_ms'] / b['cpu_ms'] - 1:>+8.1%}"
              f"{a['rps']:>15.0f}{b['rps']:>12.0f}")
    print(f"ratelimit.hit: {micro:.1f} µs a call in this process")


if __name__ == "__main__":
    sys.exit(main())
