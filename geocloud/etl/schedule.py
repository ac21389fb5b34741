"""The update procedure at a glance: for every served layer (core and agency), its update frequency
(the catalog's), its last successful update (the newest ETL run that published it or found the
source unchanged), when it is next due, and the last run's warnings. ``geocloud layers due`` and
the admins' ``/admin/updates`` page both show what ``due`` computes: overdue layers first, then by
due date, so the GIS office sees what its procedure owes this month.

A layer never updated is due at once (and listed first); an ``irregular`` one is never due."""

from dataclasses import asdict, dataclass
from datetime import datetime

import psycopg
from dateutil.relativedelta import relativedelta

from geocloud.catalog import Catalog

SUCCESS = ("published", "unchanged")  # an unchanged run checked the source: the layer is up to date
EVERY = {"daily": relativedelta(days=1), "weekly": relativedelta(weeks=1), "monthly": relativedelta(months=1),
         "quarterly": relativedelta(months=3), "yearly": relativedelta(years=1)}


@dataclass(frozen=True)
class Due:
    layer: str
    title: str
    origin: str                     # core | agency
    owner: str | None
    frequency: str
    last_success: datetime | None   # when the newest successful run finished
    next_due: datetime | None       # None: irregular, or never updated (due at once)
    overdue: bool
    last_run: dict | None           # the newest run: id, status, finished, warnings, error

    def as_json(self) -> dict:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()}


def due(conn: psycopg.Connection, catalog: Catalog, now: datetime) -> list[Due]:
    """Every served layer's schedule as of ``now``: overdue first (longest overdue first), then by
    next due date, irregular ones last."""
    ids = list(catalog.layers)
    success = dict(conn.execute(
        "SELECT l, max(coalesce(finished_at, started_at)) FROM geocloud.etl_runs, unnest(layers) AS l "
        "WHERE l = ANY(%s) AND status = ANY(%s) AND NOT dry_run GROUP BY l", (ids, list(SUCCESS))).fetchall())
    last = {r[0]: {"run": r[1], "status": r[2], "finished_at": r[3] and r[3].isoformat(), "warnings": r[4],
                   "error": r[5]} for r in conn.execute(
        "SELECT DISTINCT ON (l) l, id, status, finished_at, warnings, error FROM geocloud.etl_runs, "
        "unnest(layers) AS l WHERE l = ANY(%s) AND NOT dry_run ORDER BY l, id DESC", (ids,)).fetchall()}
    out = []
    for layer_id, layer in catalog.layers.items():
        when = success.get(layer_id)
        step = EVERY.get(layer.update_frequency)
        next_due = when + step if step is not None and when is not None else None
        overdue = step is not None and (next_due is None or next_due <= now)
        out.append(Due(layer_id, layer.title.zh_TW, catalog.origin(layer_id), catalog.owner(layer_id),
                       layer.update_frequency, when, next_due, overdue, last.get(layer_id)))
    # never updated first, then by due date (the longest overdue first), irregular layers last
    return sorted(out, key=lambda d: (not d.overdue and d.next_due is None, d.next_due is not None,
                                      d.next_due or now, d.layer))
