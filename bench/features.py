"""bench/features: geocloud against stock pygeoapi (its own PostgreSQL provider), tipg and MapServer 8,
on the same PostGIS data and machine, one server process each, 4 concurrent keep-alive clients.

Prints requests per second and p50/p95 latency for a 100-feature bbox page at city and street
scale and a CQL2 attribute filter, and the time of a full paged read of the buildings layer.

Every peer runs twice: as shipped (the server's default session settings: JIT and parallel query
on) and tuned (geocloud's own session settings from geocloud/db/pool.py, through PGOPTIONS for
libpq clients and the connection URL's server settings for tipg's asyncpg); the targets apply to
the tuned column. Each figure is the median of ``--pairs`` alternated pairs (geocloud, peer), so a
noisy machine slows both sides of a pair. geocloud is also measured with exact counts forced, with
the rate limit's counting removed, and with a key on an internal layer (all in-process what-ifs of
bench/patched.py or a copy of the project; geocloud's code is unchanged). Beside req/s, each side's
CPU milliseconds a request (its processes and the PostGIS connections, from /proc) give a ratio of
the work done that a shared, busy machine disturbs far less than wall time.

    .venv/bin/python bench/features.py [--scale 50] [--seconds 4] [--pairs 3] [--paged-pairs 1] [--peers exact,geocloud,pygeoapi,tipg,mapserver]
"""

import argparse
import http.client
import json
import sys
import urllib.parse
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psycopg
import yaml
from pygeoapi.openapi import get_oas

from common import (ROOT, SESSION_SETTINGS, TUNED_PGOPTIONS, agency_key, backend_pids, cpu_of, free_port,
                    geocloud_cmd, internal_project, load, load_city, median_pair, page_all, process_tree, sample_city,
                    scratch_database, server)
from mapserver import mapserver

from geocloud import db
from geocloud.catalog import load_catalog

CITY_BBOX = "120.50,24.05,120.80,24.30"
STREET_BBOX = "120.6440,24.1590,120.6500,24.1650"
FILTER = "floors>=5"


def stock_pygeoapi_config(url: str, port: int, folder: Path) -> tuple[Path, Path]:
    info = psycopg.conninfo.conninfo_to_dict(url)
    ours = yaml.safe_load((ROOT / "pygeoapi-config.yml").read_text(encoding="utf-8"))
    config = {
        "server": {**ours["server"], "url": f"http://127.0.0.1:{port}", "languages": ["en-US"],
                   "limits": {"default_items": 100, "max_items": 10000}},
        "logging": {"level": "ERROR"},
        "metadata": ours["metadata"],
        "resources": {"buildings": {
            "type": "collection", "title": "buildings", "description": "buildings", "keywords": ["buildings"],
            "extents": {"spatial": {"bbox": [120.4, 23.9, 121.5, 24.5],
                                    "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}},
            "providers": [{
                "type": "feature", "name": "PostgreSQL",
                "data": {"host": info.get("host", "127.0.0.1"), "port": int(info.get("port", 5432)),
                         "dbname": info["dbname"], "user": info.get("user"), "password": info.get("password"),
                         "search_path": ["live", "public"]},
                "id_field": "building_id", "table": "buildings", "geom_field": "geom",
                # the catalog's fields: the table also holds geom_3857 (for tiles), which stock
                # pygeoapi would otherwise try to serve as a property
                "properties": [f.name for f in load_catalog(ROOT / "layers", ROOT / "agencies.yml").layers[
                    "buildings"].fields],
                "storage_crs": "http://www.opengis.net/def/crs/EPSG/0/3826"}]}},
    }
    config["server"].pop("limit", None)
    cfg = folder / "stock-pygeoapi.yml"
    cfg.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    oas = folder / "stock-openapi.json"
    oas.write_text(json.dumps(get_oas(config), default=str), encoding="utf-8")
    return cfg, oas


def scenarios(items: str, kind: str = "geocloud") -> dict[str, list[str]]:
    """The requests of each scenario. Stock pygeoapi refuses filter-lang=cql2-text (it parses the
    filter as ECQL, which reads this simple comparison the same way), so it gets none. MapServer 8.0
    ignores ``filter`` (it answers every feature), so it has no filter scenario; it is asked for
    GeoJSON by ``f=json`` (its default is HTML)."""
    first = items + ("?f=json&" if kind == "mapserver" else "?")
    found = {
        "bbox page, city scale": [f"{first}limit=100&bbox={CITY_BBOX}"],
        "bbox page, street scale": [f"{first}limit=100&bbox={STREET_BBOX}"],
        "CQL2 attribute filter": [f"{first}limit=100&filter={FILTER}"
                                  + ("" if kind == "pygeoapi" else "&filter-lang=cql2-text")],
    }
    if kind == "mapserver":
        del found["CQL2 attribute filter"]
    return found


# issue #17's targets: geocloud / tuned peer, per scenario; a full paged read >= 3x all three
TARGETS = {"pygeoapi": 2.0, "tipg": 1.5, "MapServer 8": 1.25}
PAGED_TARGET = 3.0


class Served:
    def __init__(self, name: str, base: str, items: str, kind: str, headers: dict | None = None,
                 pids: list[int] | None = None):
        self.name, self.base, self.items, self.kind, self.headers = name, base, items, kind, headers
        self.pids = pids or [base.pid]  # the server's own processes (their children are found at each count)
        self.url = ""  # the database, whose PostGIS connections are counted with the server's CPU

    def cpu(self) -> float:
        """CPU seconds so far of the server's processes and of every PostGIS connection to the bench
        database (the other servers are idle while this one is measured)."""
        return cpu_of([p for root in self.pids for p in process_tree(root)] + backend_pids(self.url))

    def paths(self) -> dict[str, list[str]]:
        return scenarios(self.items, self.kind)

    def first_page(self) -> str:
        return self.items + ("?f=json&" if self.kind == "mapserver" else "?") + "limit=1000"


@contextmanager
def geocloud(name: str, url: str, patches: str = "", env: dict | None = None, headers: dict | None = None):
    port = free_port()
    items = "/collections/buildings/items"
    ready = items + "?limit=1" + (f"&api_key={headers['X-API-Key']}" if headers else "")
    with server(geocloud_cmd(port, patches), port, ready, env={"GEOCLOUD_DATABASE_URL": url, **(env or {})},
                log_name=name.replace(" ", "").replace(",", "-")) as base:
        yield Served(name, base, items, "geocloud", headers)


@contextmanager
def pygeoapi(url: str, folder: Path, tuned: bool):
    port = free_port()
    cfg, oas = stock_pygeoapi_config(url, port, folder)
    env = {"PYGEOAPI_CONFIG": str(cfg), "PYGEOAPI_OPENAPI": str(oas), **({"PGOPTIONS": TUNED_PGOPTIONS} if tuned else {})}
    with server([sys.executable, "-m", "uvicorn", "pygeoapi.starlette_app:APP", "--port", str(port), "--log-level",
                 "error"], port, "/collections/buildings/items?limit=1", env=env,
                log_name=f"pygeoapi-{'tuned' if tuned else 'shipped'}") as base:
        yield Served(f"pygeoapi {'tuned' if tuned else 'shipped'}", base, "/collections/buildings/items", "pygeoapi")


@contextmanager
def tipg(url: str, tuned: bool):
    port = free_port()
    # asyncpg reads no PGOPTIONS; it takes the connection URL's query parameters as server settings
    dsn = url + ("?" + urllib.parse.urlencode(SESSION_SETTINGS) if tuned else "")
    items = "/collections/live.buildings/items"
    with server([sys.executable, "-m", "uvicorn", "tipg.main:app", "--port", str(port), "--log-level", "error"], port,
                items + "?limit=1", env={"DATABASE_URL": dsn, "TIPG_DB_SCHEMAS": '["live"]'},
                log_name=f"tipg-{'tuned' if tuned else 'shipped'}") as base:
        yield Served(f"tipg {'tuned' if tuned else 'shipped'}", base, items, "tipg")


@contextmanager
def mapserver_peer(url: str, tuned: bool):
    layer = load_catalog(ROOT / "layers", ROOT / "agencies.yml").layers["buildings"]
    with mapserver(url, layer, env={"PGOPTIONS": TUNED_PGOPTIONS} if tuned else None) as (base, items, pids):
        yield Served(f"MapServer 8 {'tuned' if tuned else 'shipped'}", base, items, "mapserver", pids=pids)


def get_json(served: Served, path: str) -> dict:
    host = urllib.parse.urlsplit(served.base)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
    conn.request("GET", path, headers={"Accept": "application/geo+json", **(served.headers or {})})
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        sys.exit(f"{resp.status} from {served.name} {path}: {body[:300]!r}")
    return json.loads(body)


def measured(served: Served, paths: list[str], requests: int) -> dict:
    """``load``'s figures and the CPU milliseconds a request of the server and its PostGIS
    connections: what the work costs, which a busy shared machine disturbs far less than wall time."""
    before = served.cpu()
    found = load(served.base, paths, requests, headers=served.headers)
    return {**found, "cpu_ms": (served.cpu() - before) * 1000 / requests}


def compare(ours: Served, peer: Served, seconds: float, pairs: int, paged_pairs: int) -> dict:
    """The median alternated pair (ours, peer) of every scenario both serve, and of a full paged read.
    Each side sends as many requests as its warm-up rate says fit in ``seconds`` (at least 20): a
    server answering a page a second is not held for minutes, a fast one is timed long enough."""
    found = {}
    for label, peer_paths in peer.paths().items():
        our_paths = ours.paths()[label]
        n_ours = max(20, int(seconds * load(ours.base, our_paths, 20, headers=ours.headers)["rps"]))  # warm up
        n_peer = max(20, int(seconds * load(peer.base, peer_paths, 20, headers=peer.headers)["rps"]))
        found[label] = median_pair(lambda: measured(ours, our_paths, n_ours),
                                   lambda: measured(peer, peer_paths, n_peer), pairs)

    def paged(served: Served) -> dict:
        took, count = page_all(served.base, served.first_page(), headers=served.headers)
        return {"rps": count / took, "seconds": took, "features": count}

    found["full paged read"] = median_pair(lambda: paged(ours), lambda: paged(peer), paged_pairs)
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=50.0, help="sample city scale (50 = 100,000 buildings)")
    ap.add_argument("--seconds", type=float, default=4.0, help="about how long each side of a pair is timed")
    ap.add_argument("--pairs", type=int, default=3, help="alternated (geocloud, peer) pairs; the median is kept")
    ap.add_argument("--paged-pairs", type=int, default=1,
                    help="pairs for the full paged read (a peer paging by offset takes minutes per read)")
    ap.add_argument("--peers", default="exact,geocloud,pygeoapi,tipg,mapserver",
                    help="comma-separated groups to compare with geocloud (exact = geocloud with exact counts, "
                         "geocloud = its other what-ifs)")
    args = ap.parse_args()
    city = sample_city(args.scale)
    folder = ROOT / ".geocloud" / "bench"
    results: dict[str, dict] = {}   # peer name -> scenario -> (geocloud's figure, the peer's figure)
    counts: dict[str, tuple] = {}   # server name -> (numberMatched, estimated?) of the city-scale page
    with scratch_database() as url:
        db.upgrade(url)
        load_city(url, city, ["buildings"])
        with psycopg.connect(url) as conn:  # every server meets the same warm database cache
            conn.execute("SELECT count(*), sum(length(ST_AsBinary(geom))) FROM live.buildings").fetchone()
        key_headers = {"X-API-Key": agency_key(url)}
        groups = {
            "exact": [lambda: geocloud("geocloud, exact counts", url, env={"GEOCLOUD_EXACT_COUNT_LIMIT": str(2**62)})],
            "geocloud": [lambda: geocloud("geocloud, no rate limit", url, "no_rate_limit"),
                         lambda: geocloud("geocloud, key, internal", url, headers=key_headers,
                                          env={"GEOCLOUD_PROJECT_DIR": str(internal_project("buildings"))})],
            "pygeoapi": [lambda: pygeoapi(url, folder, False), lambda: pygeoapi(url, folder, True)],
            "tipg": [lambda: tipg(url, False), lambda: tipg(url, True)],
            "mapserver": [lambda: mapserver_peer(url, False), lambda: mapserver_peer(url, True)],
        }
        with geocloud("geocloud", url) as ours:
            ours.url = url
            load(ours.base, ours.paths()["bbox page, street scale"], 40)  # open the pool, read the catalog
            page = get_json(ours, ours.paths()["bbox page, city scale"][0])
            counts[ours.name] = (page["numberMatched"], page.get("numberMatchedIsEstimate", False))
            for group in args.peers.split(","):
                for start in groups[group]:
                    with ExitStack() as stack:
                        peer = stack.enter_context(start())
                        peer.url = url
                        page = get_json(peer, peer.paths()["bbox page, city scale"][0])
                        counts[peer.name] = (page.get("numberMatched"), page.get("numberMatchedIsEstimate", False))
                        results[peer.name] = compare(ours, peer, args.seconds, args.pairs, args.paged_pairs)
                        ratios = "  ".join(f"{label} {ours_r['rps'] / peer_r['rps']:.2f}x" + (
                            f" (cpu {peer_r['cpu_ms'] / ours_r['cpu_ms']:.2f}x)" if "cpu_ms" in ours_r else "")
                            for label, (ours_r, peer_r) in results[peer.name].items())
                        print(f"  measured {peer.name}: geocloud/{peer.name} {ratios}", flush=True)  # kept if cut short
    report(results, counts, args)


def report(results: dict, counts: dict, args) -> None:
    any_row = next(iter(results.values()))
    n = any_row["full paged read"][0]["features"]
    print(f"\nbuildings layer: {n:,} features; one server process each; 4 concurrent clients, about {args.seconds:g} s "
          f"per scenario and server; each row the median of {args.pairs} alternated (geocloud, peer) pairs "
          f"({args.paged_pairs} for the full paged read)")
    print(f"peers 'tuned' run with geocloud's session settings ({TUNED_PGOPTIONS}); targets apply to them\n")
    print(f"{'scenario':<26}{'peer':<26}{'peer req/s':>11}{'p50':>7}{'p95':>7}{'cpu ms':>7}{'geocloud':>10}{'p50':>7}"
          f"{'p95':>7}{'cpu ms':>7}{'ratio':>8}{'cpu ratio':>10}  target")
    labels = [*scenarios("x"), "full paged read"]
    for label in labels:
        for name, row in results.items():
            if label not in row:
                continue
            ours, peer = row[label]
            ratio = ours["rps"] / peer["rps"]
            family = next((f for f in TARGETS if name.startswith(f)), None)
            target = ""
            if family and name.endswith("tuned"):
                want = PAGED_TARGET if label == "full paged read" else TARGETS[family]
                target = f">= {want:g}x {'met' if ratio >= want else 'NOT met'}"
            if label == "full paged read":
                print(f"{label:<26}{name:<26}{peer['rps']:>9,.0f}/s{peer['seconds']:>6.1f}s{'':>7}"
                      f"{ours['rps']:>8,.0f}/s{ours['seconds']:>6.1f}s{'':>7}{ratio:>7.2f}x  {target}")
            else:
                print(f"{label:<26}{name:<26}{peer['rps']:>11.1f}{peer['p50']:>7.1f}{peer['p95']:>7.1f}"
                      f"{peer['cpu_ms']:>7.2f}{ours['rps']:>10.1f}{ours['p50']:>7.1f}{ours['p95']:>7.1f}"
                      f"{ours['cpu_ms']:>7.2f}{ratio:>7.2f}x{peer['cpu_ms'] / ours['cpu_ms']:>9.2f}x  {target}")
    print("  (full paged read: features/s and seconds for limit=1000 pages followed by their next links)")
    print("  (cpu ms: CPU a request of the server's processes and all PostGIS connections to the bench database;\n"
          "   cpu ratio = peer's / geocloud's: the work each does, which a busy shared machine disturbs far less\n"
          "   than req/s; a peer that opens and closes a connection inside a measurement has that CPU missed)")
    print("\nnumberMatched of the city-scale page (geocloud's default: the planner's estimate above "
          "10,000 matches, since an exact count there reads every match; exact below)")
    for name, (matched, estimated) in counts.items():
        print(f"  {name:<28}{matched if matched is not None else '-':>10}{'  (estimate)' if estimated else ''}")
    for name, note in (("geocloud, exact counts", "exact counts forced / default (estimate)"),
                       ("geocloud, no rate limit", "rate limit counting removed / default"),
                       ("geocloud, key, internal", "key on an internal layer / anonymous on a public layer")):
        if name in results:
            cells = "   ".join(f"{label}: {1 / (results[name][label][0]['rps'] / results[name][label][1]['rps']):.3f}"
                               for label in labels)
            print(f"\n{note}:\n  {cells}")


if __name__ == "__main__":
    main()
