"""The audit trail: reads of non-public layers, changes to keys and agencies, and every management
action on a layer (who, when, which layer, before and after); ``read`` gives it back, to
``geocloud audit`` and ``GET /manage/audit`` alike.

Reads are queued in memory and written by a background thread in batches (write-behind), so a
request never waits for the audit insert; administrative actions are written at once. Every record
passes ``redact`` on its way in: a credential sent in a query (``?api_key=``) is never stored.
"""

import atexit
import json
import logging
import queue
import re
import threading
import time
from datetime import datetime, timedelta, timezone

import psycopg
from psycopg.types.json import Jsonb

from geocloud.access import background
from geocloud.access.redact import redact_detail
from geocloud.db.pool import write_pool
from geocloud.errors import DatabaseError, InputError

_queue: "queue.Queue[tuple]" = queue.Queue(maxsize=100_000)
TILE_SURFACES = ("tiles", "rasters")
RETRY_SECONDS = 1.0  # between attempts to write a batch while the database is away


def record(conn: psycopg.Connection, action: str, principal: str | None, agency: str | None,
           layer: str | None = None, surface: str | None = None, detail: dict | None = None) -> None:
    conn.execute("INSERT INTO geocloud.audit (action, principal, agency, layer, surface, detail) "
                 "VALUES (%s, %s, %s, %s, %s, %s)",
                 (action, principal, agency, layer, surface, Jsonb(redact_detail(detail or {}))))


_tile_reads: dict[tuple, list] = {}   # (principal, agency, layer, surface) -> [tiles, bytes, paths, key]
_tile_written: dict[tuple, tuple[int, int]] = {}


def tile_read(principal: str | None, agency: str | None, layer: str, surface: str, path: str, size: int,
              key: str | None) -> None:
    """Count a tile read: a map view fetches dozens of tiles a second, so reads are summed per
    principal and layer (tiles, bytes, the first paths) and written as one record a batch.

    Counts only ever grow here and the writer records what they gained since its last look, so the
    request path takes no lock and the writer's work does not grow with the number of requests."""
    group = _tile_reads.get((principal, agency, layer, surface))
    if group is None:
        if not background.running("geocloud-audit"):
            _start()
        group = _tile_reads.setdefault((principal, agency, layer, surface), [0, 0, [], key])
    group[0] += 1
    group[1] += size
    if len(group[2]) < 20:
        group[2].append(path)


def enqueue(principal: str | None, agency: str | None, layer: str, surface: str, detail: dict) -> None:
    """Queue a read for the writer thread; never blocks a request (a full queue drops, and says so)."""
    _start()
    try:
        _queue.put_nowait((principal, agency, layer, surface, detail))
    except queue.Full:
        logging.getLogger("geocloud.audit").error("audit queue full: a read of %s was not recorded", layer)


def _start() -> None:
    background.ensure("geocloud-audit", _writer)


def _take_tile_reads(taken: dict) -> list[tuple]:
    """The tile reads counted since the last call, one record per principal and layer; ``taken``
    gets each group's count as it was before, so that a failed write can give them back."""
    out = []
    for group_key, group in list(_tile_reads.items()):
        tiles, size = group[0], group[1]
        paths, group[2] = group[2], []
        before = _tile_written.get(group_key, (0, 0))
        if tiles > before[0]:
            taken[group_key] = before
            _tile_written[group_key] = (tiles, size)
            out.append((*group_key, {"tiles": tiles - before[0], "bytes": size - before[1], "paths": paths,
                                     "key": group[3]}))
    return out


def _give_back(batch: list[tuple], taken: dict) -> bool:
    """Put a batch the database could not take back in line (reads in the queue, tile counts as not
    yet written), so an outage that cuts a write short loses nothing; False if the queue is full."""
    _tile_written.update(taken)
    try:
        for read in batch:
            _queue.put_nowait(read)
    except queue.Full:
        return False
    return True


def _writer() -> None:
    while True:
        try:
            batch = [_queue.get(timeout=1.0)]
        except queue.Empty:
            batch = []
        while batch and len(batch) < 500:
            try:
                batch.append(_queue.get(timeout=0.2))
            except queue.Empty:
                break
        taken: dict = {}
        tiles = _take_tile_reads(taken)
        if not batch and not tiles:
            continue
        try:
            _write_reads(batch + tiles)
        except (DatabaseError, psycopg.OperationalError):
            if not _give_back(batch, taken):
                logging.getLogger("geocloud.audit").error("audit queue full: reads not recorded after an outage")
            time.sleep(RETRY_SECONDS)
        except Exception:  # noqa: BLE001 - the writer must outlive a bad record; say what was lost
            logging.getLogger("geocloud.audit").exception("%d audit records could not be written",
                                                           len(batch) + len(tiles))
        finally:
            for _ in batch:
                _queue.task_done()


def _write_reads(reads: list[tuple]) -> None:
    """The one place read records are written: one COPY, each record's details redacted."""
    with write_pool().connection() as conn, conn.cursor().copy(
            "COPY geocloud.audit (action, principal, agency, layer, surface, detail) FROM STDIN") as copy:
        for p, a, layer, s, d in reads:
            copy.write_row(("read", p, a, layer, s, json.dumps(redact_detail(d), ensure_ascii=False)))


def flush(timeout: float = 5.0) -> None:
    """Wait until queued reads are written (used at shutdown)."""
    if _tile_reads:
        try:
            _write_reads(_take_tile_reads({}))
        except Exception:  # noqa: BLE001 - at exit, nothing more can be done
            logging.getLogger("geocloud.audit").exception("tile reads could not be recorded at exit")
    if background.running("geocloud-audit"):
        done = threading.Event()
        threading.Thread(target=lambda: (_queue.join(), done.set()), daemon=True).start()
        done.wait(timeout)


atexit.register(flush)


def record_grant_changes(conn: psycopg.Connection, catalog, operator: str) -> int:
    """Compare each layer's access (level and grants) with the last recorded one; record changes."""
    changed = 0
    for layer in catalog.layers.values():
        now = layer.access.model_dump(mode="json", exclude_none=True)  # a grant without expiry as before expiries
        row = conn.execute("SELECT value FROM geocloud.secrets WHERE name = %s", (f"access:{layer.id}",)).fetchone()
        before = json.loads(row[0]) if row else None
        if before != now:
            record(conn, "grant-changed", operator, None, layer.id, "catalog", {"before": before, "after": now})
            conn.execute("INSERT INTO geocloud.secrets (name, value) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE "
                         "SET value = excluded.value", (f"access:{layer.id}", json.dumps(now)))
            changed += 1
    return changed


MAX_READ = 1000  # records one read of the trail returns at most


def parse_since(text: str, name: str = "--since") -> datetime:
    """``7d`` or ``12h`` back from now, or an ISO date or time (UTC unless it says otherwise)."""
    if m := re.fullmatch(r"(\d{1,5})([dh])", text):
        return datetime.now(timezone.utc) - int(m.group(1)) * timedelta(**{"days" if m.group(2) == "d" else "hours": 1})
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{name}: {text!r} is not a date, a time or a duration",
                         fix="write e.g. 2026-12-01, 2026-12-01T08:00+08:00, 7d or 12h") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def read(conn: psycopg.Connection, *, layer: str | None = None, actor: str | None = None,
         agency: str | None = None, since: datetime | None = None, limit: int = 200,
         layers: list[str] | None = None) -> list[dict]:
    """The newest records first: on ``layer`` (and, when ``layers`` is given, on one of those only),
    by ``actor`` (a principal as recorded, or an agency code), of ``agency``, at or after ``since``.
    Each: id, at, action, principal, agency, layer, surface, before, after (of a change) and detail."""
    rows = conn.execute(
        "SELECT id, at, action, principal, agency, layer, surface, detail FROM geocloud.audit "
        "WHERE (%(l)s::text IS NULL OR layer = %(l)s) AND (%(ls)s::text[] IS NULL OR layer = ANY(%(ls)s)) "
        "AND (%(who)s::text IS NULL OR principal = %(who)s OR agency = %(who)s) "
        "AND (%(a)s::text IS NULL OR agency = %(a)s) AND (%(s)s::timestamptz IS NULL OR at >= %(s)s) "
        "ORDER BY id DESC LIMIT %(n)s",
        {"l": layer, "ls": layers, "who": actor, "a": agency, "s": since, "n": min(limit, MAX_READ)}).fetchall()
    out = []
    for id_, at, action, principal, agency_, layer_, surface, detail in rows:
        rest = {k: v for k, v in detail.items() if k not in ("before", "after")}
        out.append({"id": id_, "at": at.isoformat(), "action": action, "principal": principal, "agency": agency_,
                    "layer": layer_, "surface": surface, "before": detail.get("before"),
                    "after": detail.get("after"), "detail": rest})
    return out
