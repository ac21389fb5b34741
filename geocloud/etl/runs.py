"""Run records: who ran what, on which file (checksum), when, with what counts, diff and outcome."""

import json
import logging
import os
import socket
import time
from pathlib import Path

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from geocloud.config import operator
from geocloud.db import connect
from geocloud.errors import DatabaseError, NotFound

LOG = logging.getLogger(__name__)


def start(conn: psycopg.Connection, pipeline: str, layers: list[str], source: Path, dry_run: bool) -> int:
    return conn.execute(
        "INSERT INTO geocloud.etl_runs (pipeline, layers, source_path, operator, host, pid, dry_run) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (pipeline, layers, str(source.resolve()), operator(), socket.gethostname(), os.getpid(), dry_run),
    ).fetchone()[0]


def set_checksum(conn: psycopg.Connection, run_id: int, sha256: str) -> None:
    conn.execute("UPDATE geocloud.etl_runs SET source_sha256 = %s WHERE id = %s", (sha256, run_id))


def finish(conn: psycopg.Connection, run_id: int, status: str, *, sha256: str | None = None,
           counts: dict | None = None, timings: dict | None = None, warnings: list | None = None,
           diff: dict | None = None, quality: dict | None = None, error: str | None = None,
           guard: dict | None = None) -> None:
    conn.execute(
        "UPDATE geocloud.etl_runs SET status = %s, finished_at = now(), source_sha256 = %s, counts = %s, "
        "timings = %s, warnings = %s, diff = %s, quality = %s, error = %s, guard = %s WHERE id = %s",
        (status, sha256, Jsonb(counts or {}), Jsonb(timings or {}), Jsonb(warnings or []), Jsonb(diff or {}),
         Jsonb(quality or {}), error, Jsonb(guard or {}), run_id))


class Recorder:
    """A run's progress written to its record while it runs, so that any process can say how it
    stands (``GET /manage/runs/{run}``): ``counts`` holds {stage, read, total} until the run ends and
    writes its final counts. Written at each new stage and at most every EVERY seconds, on a
    connection of its own (the run's is inside its transaction), never waiting on the row's lock and
    never failing the run. ``shown`` is the caller's own progress (the CLI's bars), told the same."""

    EVERY = 1.0  # seconds between two writes while rows are read

    def __init__(self, run_id: int, shown):
        self.run_id, self.shown = run_id, shown
        self.figures = {"stage": None, "read": 0, "total": None}
        self._conn, self._written, self._off = None, 0.0, False

    def stage(self, name: str, total: int | None = None) -> None:
        self.shown.stage(name, total)
        self.figures.update(stage=name, total=total)
        self._write()

    def advance(self, n: int) -> None:
        self.shown.advance(n)
        self.figures["read"] += n
        if time.monotonic() - self._written >= self.EVERY:
            self._write()

    def _write(self) -> None:
        self._written = time.monotonic()
        if self._off:
            return
        try:
            self._conn = self._conn or connect(autocommit=True)
            self._conn.execute("UPDATE geocloud.etl_runs SET counts = %s WHERE id = (SELECT id FROM geocloud.etl_runs "
                               "WHERE id = %s AND status = 'running' FOR UPDATE SKIP LOCKED)",
                               (Jsonb(self.figures), self.run_id))
        except (psycopg.Error, DatabaseError) as exc:
            LOG.warning("run %s: progress no longer recorded (%s)", self.run_id, exc)
            self._off = True

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def write_report(data_dir: Path, run_id: int, report: dict) -> Path:
    folder = data_dir / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"run-{run_id}.json"
    path.write_text(json.dumps(report, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    return path


def get(conn: psycopg.Connection, run_id: int) -> dict:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM geocloud.etl_runs WHERE id = %s", (run_id,)).fetchone()
    if row is None:
        raise NotFound(f"no ETL run {run_id}", fix="see `geocloud etl history LAYER` for run ids")
    return row


def history(conn: psycopg.Connection, layer_id: str) -> dict:
    """Versions (live, kept, retired) and every run and switch of a layer, newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        versions = cur.execute(
            "SELECT v.version, v.state, v.feature_count, v.published_at, v.run_id, r.source_sha256, r.operator "
            "FROM geocloud.layer_versions v LEFT JOIN geocloud.etl_runs r ON r.id = v.run_id "
            "WHERE v.layer = %s ORDER BY v.version DESC", (layer_id,)).fetchall()
        run_rows = cur.execute(
            "SELECT id, pipeline, status, dry_run, operator, started_at, finished_at, source_path, error, guard "
            "FROM geocloud.etl_runs WHERE %s = ANY(layers) ORDER BY id DESC", (layer_id,)).fetchall()
        events = cur.execute(
            "SELECT action, from_version, to_version, run_id, operator, at FROM geocloud.layer_events "
            "WHERE layer = %s ORDER BY id DESC", (layer_id,)).fetchall()
    return {"layer": layer_id, "versions": versions, "runs": run_rows, "events": events}
