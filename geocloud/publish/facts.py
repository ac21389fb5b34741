"""What the live data and its history say about a layer: what metadata and portals report.

Extent, counts and dates come from ``geocloud.layer_versions``; lineage and data quality from the
ETL runs that produced the live version and the ones before it. Nothing here is typed by hand.
"""

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from geocloud.catalog import Layer
from geocloud.errors import NotFound


@dataclass(frozen=True)
class Run:
    id: int
    pipeline: str
    source_name: str
    source_sha256: str | None
    operator: str
    finished_at: datetime
    version: int


@dataclass(frozen=True)
class Facts:
    layer: Layer
    version: int
    feature_count: int | None
    extent: tuple[float, float, float, float]   # CRS84 west, south, east, north
    created: datetime                            # the first version's publish
    revised: datetime                            # the live version's publish
    runs: tuple[Run, ...]                        # the runs behind the kept versions, newest first
    quality: dict                                # the live version's run quality report


def gather(conn: psycopg.Connection, layer: Layer) -> Facts:
    with conn.cursor(row_factory=dict_row) as cur:
        live = cur.execute(
            "SELECT v.version, v.feature_count, v.published_at, ST_XMin(v.extent) w, ST_YMin(v.extent) s, "
            "ST_XMax(v.extent) e, ST_YMax(v.extent) n, r.quality FROM geocloud.layer_versions v "
            "LEFT JOIN geocloud.etl_runs r ON r.id = v.run_id WHERE v.layer = %s AND v.state = 'live'",
            (layer.id,)).fetchone()
        if live is None or live["w"] is None:
            raise NotFound(f"layer {layer.id!r} has no live data", fix="load it first with geocloud etl run")
        created = cur.execute("SELECT min(published_at) FROM geocloud.layer_versions WHERE layer = %s",
                              (layer.id,)).fetchone()["min"]
        runs = cur.execute(
            "SELECT r.id, r.pipeline, r.source_path, r.source_sha256, r.operator, r.finished_at, v.version "
            "FROM geocloud.layer_versions v JOIN geocloud.etl_runs r ON r.id = v.run_id "
            "WHERE v.layer = %s AND v.state <> 'retired' ORDER BY v.version DESC", (layer.id,)).fetchall()
    return Facts(
        layer=layer, version=live["version"], feature_count=live["feature_count"],
        extent=(live["w"], live["s"], live["e"], live["n"]), created=created, revised=live["published_at"],
        runs=tuple(Run(r["id"], r["pipeline"], r["source_path"].rsplit("/", 1)[-1], r["source_sha256"], r["operator"],
                       r["finished_at"], r["version"]) for r in runs),
        quality=live["quality"] or {},
    )

