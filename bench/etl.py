"""bench/etl: load the sample city's buildings (1,000,000 at --scale 500) into PostGIS with geocloud's
ETL and with `ogr2ogr -f PostgreSQL` (PG_USE_COPY=YES, same target CRS, GiST index) in the same run,
on the same file and server, and print features per second and peak memory for both.

Each tool loads into a fresh database after a CHECKPOINT, the two alternate for --rounds pairs, and
the median pair is printed: a single load varies by several percent with what the server is still
writing from the previous one. Each tool's own CPU seconds are printed, and, where the server runs on
this machine, those of the load database's backends (not the rest of the shared server's work): they
show how the work splits between the loader and PostgreSQL, and a busy machine disturbs them less
than wall time.

geocloud runs from its own virtual environment, as a city installs it (``pip install geocloud``: its
dependencies and nothing else), not from the bench's: that one also holds the peers of the other
benches and their extras, and pyogrio imports pandas (there only through titiler.application's
xarray) whenever it is installed, in the run's process and in its fork server. ``--in-bench-venv``
loads from the bench's environment instead, for comparison.

``--what-if no_web_mercator_copy`` loads without the stored Web Mercator geometry (bench/patched.py):
what the ETL would gain, at the cost bench/tiles.py shows with the same option.

    .venv/bin/python bench/etl.py [--scale 500] [--rounds 3] [--in-bench-venv] [--what-if PATCHES]
"""

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

from common import ROOT, cpu_seconds, geocloud_prefix, process_tree, sample_city, scratch_database, timed, url_for

from geocloud import db


class ServerCpu:
    """The CPU seconds used by the PostgreSQL backends of one database (the load's own, not the other
    work the shared server does meanwhile), read from /proc every 0.2 s while the load runs: each
    backend's last reading counts, so at most its last 0.2 s goes uncounted. None when the server
    runs elsewhere."""

    def __init__(self, url: str):
        self.dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
        self.seen: dict[int, float] = {}
        self.stop = threading.Event()
        with psycopg.connect(url_for("postgres"), autocommit=True) as conn:
            data_dir = conn.execute("SHOW data_directory").fetchone()[0]
        self.local = Path(data_dir).exists()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        with psycopg.connect(url_for("postgres"), autocommit=True) as conn:
            while not self.stop.is_set():
                for (pid,) in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.dbname,)):
                    with contextlib.suppress(OSError):
                        self.seen[pid] = cpu_seconds(pid)
                self.stop.wait(0.2)

    def __enter__(self):
        if self.local:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.local:
            self.thread.join()

    @property
    def seconds(self) -> float | None:
        return sum(self.seen.values()) if self.local else None


class Loader:
    """A loader's process and all it starts (geocloud's ETL prepares big sources in worker processes
    forked from a fork server): their resident memory summed, and their CPU seconds, read from /proc
    every 20 ms while it runs. Each process's last reading counts, so at most its last 20 ms of CPU
    go uncounted; the memory of pages a fork shares counts in every process that maps them."""

    def __init__(self, cmd: list[str], env: dict):
        self.cpu: dict[int, float] = {}
        self.peak = 0
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **env})
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while not self.stop.is_set():
            resident = 0
            for pid in process_tree(self.proc.pid):
                with contextlib.suppress(OSError, ValueError):
                    self.cpu[pid] = cpu_seconds(pid)
                    resident += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
            self.peak = max(self.peak, resident)
            self.stop.wait(0.02)

    def wait(self) -> tuple[float, int, str]:
        """(the loader's CPU seconds, peak memory, stdout): the larger of the sampled figures and the
        kernel's own for the loader and the processes it waited for (``wait4``)."""
        err: list[bytes] = []
        reader = threading.Thread(target=lambda: err.append(self.proc.stderr.read()), daemon=True)
        reader.start()
        out = self.proc.stdout.read()
        reader.join()
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.stop.set()
        self.thread.join()
        if self.proc.returncode:
            sys.exit(f"command failed: {' '.join(self.proc.args)}\n{err[0].decode(errors='replace')[-3000:]}")
        return (max(sum(self.cpu.values()), usage.ru_utime + usage.ru_stime), max(self.peak, usage.ru_maxrss * 1024),
                out.decode())


def load(cmd: list[str], env: dict, count) -> tuple[float, int, float | None, str, float]:
    """(wall seconds, peak memory, server CPU seconds, stdout, the loader's own CPU seconds) of one
    load into a fresh database."""
    with scratch_database() as url:
        db.upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        with ServerCpu(url) as server:
            t0 = time.perf_counter()
            loader = Loader([part.replace("{url}", url) for part in cmd], {**env, "GEOCLOUD_DATABASE_URL": url})
            own, peak, out = loader.wait()
            wall = time.perf_counter() - t0
        count(url, out)
    return wall, peak, server.seconds, out, own


def shipped_python() -> Path:
    """The Python of a virtual environment holding geocloud (editable: this checkout) with its own
    dependencies only; made on first use (about a minute) and again when pyproject.toml changes."""
    venv = ROOT / ".geocloud" / "bench" / "shipped"
    python, stamp = venv / "bin" / "python", venv / "pyproject.sha256"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not python.exists() or not stamp.exists() or stamp.read_text() != wanted:
        print(f"making {venv.relative_to(ROOT)}: geocloud with its own dependencies (once, about a minute)", flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e",
                              str(ROOT)], capture_output=True, text=True)
        if pip.returncode:
            sys.exit(f"pip could not install geocloud into {venv}:\n{pip.stderr[-3000:]}")
        stamp.write_text(wanted)
    return python


def has_pandas(python: str) -> bool:
    return subprocess.run([python, "-c", "import pandas"], capture_output=True).returncode == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=500.0, help="sample city scale (500 = 1,000,000 buildings)")
    ap.add_argument("--rounds", type=int, default=3, help="alternated geocloud/ogr2ogr pairs (median printed)")
    ap.add_argument("--in-bench-venv", action="store_true",
                    help="run geocloud from the bench's environment (with the peers' packages), not its own")
    ap.add_argument("--what-if", default="", metavar="PATCHES",
                    help="run geocloud with bench/patched.py's PATCHES (e.g. no_web_mercator_copy)")
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

    python = sys.executable if args.in_bench_venv else str(shipped_python())
    ours_cmd = [*geocloud_prefix(args.what_if, python), "etl", "run", "buildings", str(shp), "--json"]
    peer_cmd = [ogr2ogr, "-f", "PostgreSQL", "PG:{url}", str(shp), "-nln", "buildings", "-t_srs", "EPSG:3826",
                "-nlt", "PROMOTE_TO_MULTI", "-lco", "GEOMETRY_NAME=geom", "-lco", "SPATIAL_INDEX=GIST",
                "--config", "PG_USE_COPY", "YES"]
    env = {"GEOCLOUD_DATA_DIR": str(ROOT / ".geocloud" / "bench" / "data")}
    pairs = []
    for _ in range(args.rounds):
        ours = load(ours_cmd, env, ours_loaded)
        peer = load(peer_cmd, {}, peer_loaded)
        pairs.append((ours, peer))
        print(f"  pair: geocloud {ours[0]:.2f} s ({ours[4]:.1f} + {ours[2] or 0:.1f} server CPU s), ogr2ogr "
              f"{peer[0]:.2f} s ({peer[4]:.1f} + {peer[2] or 0:.1f} server CPU s) ({peer[0] / ours[0]:.2f}x)", flush=True)
    ratios = [peer[0] / ours[0] for ours, peer in pairs]
    ours, peer = pairs[ratios.index(statistics.median_low(ratios))]

    print(f"\nbuildings: {n:,} features, Shapefile (Big5 DBF), EPSG:3826 -> PostGIS EPSG:3826 with GiST index")
    print(f"median of {args.rounds} alternated pairs; geocloud from {Path(python).parents[1]} "
          f"(pandas {'installed' if has_pandas(python) else 'not installed'})"
          + (f", what-if {args.what_if} (bench/patched.py)" if args.what_if else ""))
    print(f"{'tool':<28}{'seconds':>10}{'features/s':>14}{'peak memory':>14}{'own CPU s':>12}{'server CPU s':>15}")
    for tool, (wall, rss, spent, _, own) in (("geocloud etl run", ours), (f"ogr2ogr (GDAL {gdal})", peer)):
        cpu = f"{spent:>15.1f}" if spent is not None else f"{'n/a':>15}"
        print(f"{tool:<28}{wall:>10.1f}{n / wall:>14,.0f}{rss / 2**20:>11,.0f} MB{own:>12.1f}{cpu}")
    copy = "" if "no_web_mercator_copy" in args.what_if.split(",") else "a stored Web Mercator geometry, "
    print(f"\ngeocloud / ogr2ogr throughput: {peer[0] / ours[0]:.2f}x   (geocloud includes validation, {copy}"
          "the unique-key index, diff and publish)")
    print(f"geocloud stage timings (s): {json.loads(ours[3])['timings']}")


if __name__ == "__main__":
    main()
