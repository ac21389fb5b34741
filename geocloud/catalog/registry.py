"""Agency layers: catalog entries registered in PostGIS (``geocloud.registered_layers``) beside the
core layers of ``layers/*.yml``.

An entry is validated by the same models and checks as a YAML file, with the same messages. Ids are
unique across both origins: an agency layer never takes or shadows a core layer's id (nor an ETL
pipeline's name, which `geocloud etl run` would read first).

Every change adds a ``geocloud.registry_events`` row; its newest id is the catalog version.

Review: an editor's public layer waits in ``pending_review`` (served to its own agency only) until a
GIS office admin ``review``s it. Approval makes it live; a rejection leaves the row in
``pending_review`` and is read back as the state ``rejected`` for as long as the rejection is the
layer's newest event (served the same way, to its own agency only); any later change of the entry
(or publishing it again) asks for review anew. The last decision, its comment, who and when are kept
with the layer in its ``review`` event and read with the row. A server
process ``follow``s the version its live-version snapshot carries (serve/state.py reads it with the
layer versions, every REFRESH seconds) and re-reads the registry when it moves: a registered or
retired layer reaches every worker within seconds, with no restart and no second poller. Any other
process (the CLI, the ETL) reads the registry once, and again after it changes it.
"""

import json
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime, timezone

import psycopg
from pydantic import ValidationError

from geocloud.catalog import grants
from geocloud.catalog.load import Catalog, Registration, check_layer
from geocloud.catalog.models import Access, Grant, Layer
from geocloud.config import get_settings
from geocloud.db import connect
from geocloud.errors import ConfigError, Conflict, DatabaseError, NotFound
from geocloud.yamlfile import explain

LOG = logging.getLogger(__name__)
STATES = ("draft", "live", "pending_review", "retired")  # as stored; "rejected" is read from the review events
IN_REVIEW = ("pending_review", "rejected")  # served to the owner agency and the reviewers only
REVIEWER_ROLES = ("admin",)  # the GIS office's admins review public layers (access.policy.ADMIN_ROLES)
SERVED = ("live", *IN_REVIEW)
DECISIONS = ("approve", "reject")

_lock = threading.Lock()
_follow: tuple[Callable[[], int], Callable[[], AbstractContextManager]] | None = None
_merged: tuple[tuple, Catalog] | None = None  # ((core catalog, version), merged catalog)


def follow(version: Callable[[], int], connection: Callable[[], AbstractContextManager]) -> None:
    """Make this process re-read the registry whenever ``version()`` moves, over ``connection()``."""
    global _follow
    _follow = (version, connection)


def forget() -> None:
    """Drop the merged catalog: the next ``merged`` reads the registry again."""
    global _merged
    _merged = None


def validate(data, core: Catalog, where: str) -> Layer:
    """The entry as a Layer, or the ConfigError a layers/*.yml file with it would give."""
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of keys at the top level", where=where)
    try:
        layer = Layer.model_validate(data)
    except ValidationError as exc:
        raise explain(exc, Layer, where) from None
    check_layer(layer, where, core.agencies, core.publisher, get_settings().agencies_file)
    return layer


def _check_id(layer_id: str, core: Catalog, where: str) -> None:
    """An agency layer's id must name no core layer and no ETL pipeline."""
    if layer_id in core.layers:
        raise Conflict(f"layer id {layer_id!r} belongs to a core layer (layers/{layer_id}.yml)",
                       where=f"{where}: key 'id'", fix="choose another id for the agency layer")
    if (get_settings().etl_dir / f"{layer_id}.yml").exists():
        raise Conflict(f"layer id {layer_id!r} is the name of a core ETL pipeline (etl/{layer_id}.yml)",
                       where=f"{where}: key 'id'", fix="choose another id for the agency layer")


def _row(conn: psycopg.Connection, layer_id: str) -> tuple | None:
    return conn.execute("SELECT owner, state, entry FROM geocloud.registered_layers WHERE id = %s FOR UPDATE",
                        (layer_id,)).fetchone()


def _event(conn: psycopg.Connection, layer_id: str, action: str, operator: str, before, after) -> None:
    conn.execute("INSERT INTO geocloud.registry_events (layer, action, operator, before, after) "
                 "VALUES (%s, %s, %s, %s, %s)", (layer_id, action, operator,
                                                 json.dumps(before) if before else None, json.dumps(after)))


def register(conn: psycopg.Connection, data, owner: str, operator: str, core: Catalog, *, where: str,
             state: str = "live") -> Layer:
    """Create or update an agency layer from its catalog entry ``data``, in one transaction."""
    if state not in STATES or state == "retired":
        raise ValueError(f"a layer is registered as one of {', '.join(STATES[:-1])}, not {state!r}")
    layer = validate(data, core, where)
    _check_id(layer.id, core, where)
    if owner not in core.agencies:
        raise ConfigError(f"unknown owner agency {owner!r}", where=where,
                          fix=f"use one of: {', '.join(sorted(core.agencies))}")
    entry = layer.model_dump(mode="json", by_alias=True, exclude_unset=True)
    with conn.transaction():
        before = _row(conn, layer.id)
        if before is not None and before[0] != owner:
            raise Conflict(f"layer {layer.id!r} belongs to {before[0]}, not {owner}", where=where,
                           fix="choose another id, or ask the owner or the GIS office")
        conn.execute(
            "INSERT INTO geocloud.registered_layers (id, owner, state, entry, created_by, updated_by) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET state = excluded.state, "
            "entry = excluded.entry, updated_by = excluded.updated_by, updated_at = now()",
            (layer.id, owner, state, json.dumps(entry), operator, operator))
        after = {"owner": owner, "state": state, "entry": entry}
        _event(conn, layer.id, "update" if before else "register", operator,
               before and {"owner": before[0], "state": before[1], "entry": before[2]}, after)
    forget()
    return layer


def retire(conn: psycopg.Connection, layer_id: str, operator: str, core: Catalog) -> None:
    """Take an agency layer off every surface; its row, data and history stay."""
    with conn.transaction():
        row = _row(conn, layer_id)
        if row is None:
            if layer_id in core.layers:
                raise Conflict(f"{layer_id!r} is a core layer: it cannot be retired here",
                               fix=f"remove layers/{layer_id}.yml from the repository instead")
            raise NotFound(f"no registered layer {layer_id!r}", fix="see `geocloud layers list`")
        if row[1] == "retired":
            raise Conflict(f"layer {layer_id!r} is already retired")
        conn.execute("UPDATE geocloud.registered_layers SET state = 'retired', updated_by = %s, "
                     "updated_at = now() WHERE id = %s", (operator, layer_id))
        _event(conn, layer_id, "retire", operator, {"state": row[1]}, {"state": "retired"})
    forget()


_ROWS = """SELECT r.id, r.owner,
    CASE WHEN r.state = 'pending_review' AND e.after #>> '{review,decision}' = 'reject'
              AND e.id = (SELECT max(id) FROM geocloud.registry_events WHERE layer = r.id)
         THEN 'rejected' ELSE r.state END,
    r.entry, r.updated_by, r.updated_at, e.after -> 'review'
FROM geocloud.registered_layers r
LEFT JOIN LATERAL (SELECT id, after FROM geocloud.registry_events
                   WHERE layer = r.id AND action = 'review' ORDER BY id DESC LIMIT 1) e ON true"""


def read(conn: psycopg.Connection) -> list[tuple]:
    """Every registered layer: (id, owner, state, entry, updated_by, updated_at, last review); []
    before the migration."""
    if conn.execute("SELECT to_regclass('geocloud.registered_layers')").fetchone()[0] is None:
        return []
    return conn.execute(_ROWS + " ORDER BY r.id").fetchall()


def row(conn: psycopg.Connection, layer_id: str) -> dict | None:
    """One registered layer as it stands: owner, state (``rejected`` included), entry, last review."""
    found = conn.execute(_ROWS + " WHERE r.id = %s", (layer_id,)).fetchone()
    return found and {"owner": found[1], "state": found[2], "entry": found[3], "review": found[6]}


def review(conn: psycopg.Connection, layer_id: str, decision: str, comment: str, operator: str) -> tuple[str, dict]:
    """A GIS office admin's decision on a layer in review: ``approve`` makes it live for the access
    its entry asks; ``reject`` keeps it served to its own agency only. Returns the state before and
    the layer as it stands."""
    if decision not in DECISIONS:
        raise ConfigError(f"a review decides one of {', '.join(DECISIONS)}, not {decision!r}", where="decision")
    if decision == "reject" and not comment.strip():
        raise ConfigError("a rejection needs a comment saying what the agency should change", where="comment")
    if "\x00" in comment:  # PostgreSQL's jsonb takes no NUL: the event would fail as a server error
        raise ConfigError("the comment has a NUL character", where="comment", fix="leave out control characters")
    with conn.transaction():
        before = _row(conn, layer_id)
        if before is None:
            raise NotFound(f"no registered layer {layer_id!r}", fix="see `geocloud layers list`")
        if before[1] != "pending_review":
            raise Conflict(f"layer {layer_id!r} is not in review (it is {before[1]})",
                           fix="an editor's public layer is reviewed once it is published")
        was = row(conn, layer_id)["state"]
        stored, now = ("live", "live") if decision == "approve" else ("pending_review", "rejected")
        record = {"decision": decision, "comment": comment, "by": operator,
                  "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        conn.execute("UPDATE geocloud.registered_layers SET state = %s, updated_by = %s, updated_at = now() "
                     "WHERE id = %s", (stored, operator, layer_id))
        _event(conn, layer_id, "review", operator, {"state": was}, {"state": now, "review": record})
    forget()
    return was, {"owner": before[0], "state": now, "entry": before[2], "review": record}


def merge(core: Catalog, rows: list[tuple]) -> Catalog:
    """The core catalog plus the registered layers; one in review (pending or rejected) is served as
    restricted to its owner agency and to the GIS office's admins, who must see what they approve
    (the catalog's ``registered`` keeps the access it asks for). An
    entry that no longer validates (the models changed since) or that a core layer now shadows is left out and logged: one agency's entry must
    not stop the server."""
    registered, served = {}, {}
    for layer_id, owner, state, entry, updated_by, updated_at, last_review in rows:
        where = f"registered layer {layer_id!r}"
        try:
            _check_id(layer_id, core, where)
            layer = validate(entry, core, where)
        except (ConfigError, Conflict) as exc:
            LOG.error("left out of the catalog: %s", exc)
            continue
        registered[layer_id] = Registration(layer, owner, state, updated_by, updated_at, last_review)
        if state in IN_REVIEW:  # until approved, its own agency reads it, and the admins who review it
            reviewers = [Grant(agency=core.gis_office, roles=list(REVIEWER_ROLES))] \
                if core.gis_office not in (None, owner) else []
            served[layer_id] = layer.model_copy(update={"access": Access(level="restricted",
                                                                         grants=[Grant(agency=owner), *reviewers])})
        elif state in SERVED:
            served[layer_id] = layer
    return replace(core, layers={**core.layers, **served}, registered=registered)


def merged(core: Catalog) -> Catalog:
    """``core`` with the registry as of the version followed (or as read once, when not following).
    The version is asked outside the lock: requests go on with the catalog they have while one
    reads the registry."""
    global _merged
    following, current = _follow, _merged
    known = current[1] if current is not None and current[0][0] is core else None
    try:
        version = following[0]() if following else None
    except DatabaseError:
        return known or core  # a process that never read the live state answers nothing that needs it
    if known is not None and current[0][1] == version:
        return known
    with _lock:
        if _merged is not None and _merged[0][0] is core and _merged[0][1] == version:
            return _merged[1]  # read by another request meanwhile
        try:
            with (following[1]() if following else connect()) as conn:
                rows, granted = read(conn), grants.read(conn)
        except DatabaseError as exc:
            if known is not None:
                return known  # keep the registry last read through an outage
            LOG.warning("agency layers not read (%s): the catalog holds the core layers only", exc.what)
            if not following:
                _merged = ((core, version), core)
            return core
        _merged = ((core, version), grants.fold(merge(core, rows), granted))
        return _merged[1]
