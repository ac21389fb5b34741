"""The shrink guard: a run that would take much away from a live layer stops before publishing.

A truncated delivery, the export of one district instead of the city, or the wrong file given to
a pipeline all load cleanly yet would replace a good layer with a fraction of it. Before a new
version goes live the guard compares it with the live one: the share of live features it would
remove, the geometry type, and how far its extent moves. Beyond the limits (``rules`` of the
pipeline, else the ``GEOCLOUD_ETL_*`` settings) the publish step refuses, saying why with the
numbers, unless it is forced; a forced publish records what it overrode in the run record.
A first load (nothing live) is never stopped.

How to force is the caller's to say (``OVERRIDE``): the CLI's ``--force``, the management API's
``?force=true``.
"""

from contextvars import ContextVar
from dataclasses import dataclass
from typing import get_args

import psycopg

from geocloud.catalog.models import GeometryType
from geocloud.config import get_settings
from geocloud.errors import GuardRefused
from geocloud.etl.pipeline import Rules

EDGES = ("west", "south", "east", "north")
OVERRIDE: ContextVar[str] = ContextVar("geocloud_guard_override", default="run again with --force")


@dataclass(frozen=True)
class Limits:
    max_removed_percent: float      # of the live features
    max_extent_change_percent: float  # how far an edge of the extent may move, in % of the live width/height

    @classmethod
    def of(cls, rules: Rules) -> "Limits":
        """The pipeline's limits, or the site-wide settings where the pipeline sets none."""
        settings = get_settings()
        return cls(settings.etl_max_removed_percent if rules.max_removed_percent is None else rules.max_removed_percent,
                   settings.etl_max_extent_change_percent if rules.max_extent_change_percent is None
                   else rules.max_extent_change_percent)


def review(conn: psycopg.Connection, staged: list, limits: Limits) -> list[dict]:
    """What the guard objects to in publishing ``staged`` (``publish.Staged``) over the live versions:
    one finding per layer and check, with its numbers and a sentence; empty when all is well."""
    findings = []
    for item in staged:
        layer = item.layer
        live = conn.execute("SELECT feature_count, ST_XMin(extent), ST_YMin(extent), ST_XMax(extent), "
                            "ST_YMax(extent) FROM geocloud.layer_versions WHERE layer = %s AND state = 'live'",
                            (layer.id,)).fetchone()
        if live is None:  # a first load
            continue
        live_count, *live_box = live
        if layer.kind == "vector":
            findings += _shrink(layer.id, live_count, item.count, item.diff.removed, limits)
            findings += _geometry_type(conn, layer)
        if live_box[0] is not None and item.diff.extent_crs84:
            findings += _extent(layer.id, live_box, item.diff.extent_crs84, limits)
    return findings


def refuse(findings: list[dict]) -> GuardRefused:
    exc = GuardRefused(
        "the guard stopped this run before publishing; nothing changed:\n  - "
        + "\n  - ".join(f["message"] for f in findings),
        fix="check that the file is complete and the right one for this pipeline; if the change is intended, "
            f"{OVERRIDE.get()} (the override is recorded in the run)")
    exc.findings = findings
    return exc


def _shrink(layer_id: str, live: int, new: int, removed: int, limits: Limits) -> list[dict]:
    if not live:
        return []
    share = 100.0 * removed / live
    if share <= limits.max_removed_percent:
        return []
    return [{"layer": layer_id, "check": "removed", "live_count": live, "new_count": new, "removed": removed,
             "removed_percent": round(share, 1), "limit_percent": limits.max_removed_percent,
             "message": f"{layer_id}: would remove {removed} of the {live} live features ({share:.1f}%; the limit "
                        f"is {limits.max_removed_percent:g}%), leaving {new} features"}]


def _geometry_type(conn: psycopg.Connection, layer) -> list[dict]:
    row = conn.execute("SELECT type FROM geometry_columns WHERE f_table_schema = 'live' AND f_table_name = %s "
                       "AND f_geometry_column = 'geom'", (layer.id,)).fetchone()
    if row is None or row[0].upper() == layer.geometry.upper():
        return []
    old = next((t for t in get_args(GeometryType) if t.upper() == row[0].upper()), row[0])
    return [{"layer": layer.id, "check": "geometry_type", "live_type": old, "new_type": layer.geometry,
             "message": f"{layer.id}: the geometry type would change from {old} (live) to {layer.geometry}"}]


def _extent(layer_id: str, live: list[float], new: list[float], limits: Limits) -> list[dict]:
    """How far each edge of the bounding box moves, as a share of the live extent's width (west,
    east) or height (south, north); a point layer of one point has no size to compare with."""
    width, height = live[2] - live[0], live[3] - live[1]
    size = {"west": width, "east": width, "south": height, "north": height}
    moves = {}
    for i, edge in enumerate(EDGES):
        scale = size[edge] or max(width, height)
        if scale > 0:
            moves[edge] = 100.0 * abs(new[i] - live[i]) / scale
    if not moves:
        return []
    edge = max(moves, key=moves.get)
    if moves[edge] <= limits.max_extent_change_percent:
        return []
    fmt = lambda box: "[" + ", ".join(f"{v:.5f}" for v in box) + "]"  # noqa: E731
    return [{"layer": layer_id, "check": "extent", "live_extent": list(live), "new_extent": list(new),
             "edge": edge, "moved_percent": round(moves[edge], 1), "limit_percent": limits.max_extent_change_percent,
             "message": f"{layer_id}: the extent would change beyond the limit: its {edge} edge moves by "
                        f"{moves[edge]:.1f}% of the live extent's {'width' if edge in ('west', 'east') else 'height'} "
                        f"(the limit is {limits.max_extent_change_percent:g}%); live {fmt(live)}, new {fmt(new)} "
                        "(lon/lat: west, south, east, north)"}]
