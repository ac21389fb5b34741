"""Shared helpers for the benchmarks: a throw-away database, timed child processes, a sample city."""

import json
import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]


def server_url() -> str:
    url = os.environ.get("GEOCLOUD_DATABASE_URL")
    if not url:
        sys.exit("GEOCLOUD_DATABASE_URL is not set: run `scripts/dev setup` and export what it prints")
    return url


def url_for(dbname: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(server_url())
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**info)


@contextmanager
def scratch_database(prefix: str = "geocloud_bench"):
    name = f"{prefix}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(url_for("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield url_for(name)
    finally:
        with psycopg.connect(url_for("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """(wall seconds, peak resident memory in bytes, stdout) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{err.decode(errors='replace')[-3000:]}")
    return wall, usage.ru_maxrss * 1024, out.decode()


def sample_city(scale: float) -> Path:
    folder = ROOT / ".geocloud" / "bench" / f"city-{scale:g}"
    manifest = folder / "manifest.json"
    if not manifest.exists() or json.loads(manifest.read_text())["scale"] != scale:
        print(f"generating the sample city at scale {scale:g} into {folder} ...", flush=True)
        subprocess.run([sys.executable, "-m", "geocloud", "sample", "generate", str(folder), "--scale", str(scale)],
                       check=True, stdout=subprocess.DEVNULL)
    return folder
