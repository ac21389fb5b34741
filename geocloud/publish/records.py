"""What was pushed where (``geocloud.publications``) and every attempt (``geocloud.publish_attempts``).

A push is recorded only after the target confirmed it. Staleness is not a flag that someone must
remember to set: a push is stale whenever the layer's live version differs from the version
pushed, so an ETL publish or a rollback makes it stale by itself.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import dict_row

TARGETS = ("tgos", "datagov")


@dataclass(frozen=True)
class Pushed:
    identifier: str
    version: int
    payload_sha256: str
    pushed_at: datetime


def digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def pushed(conn: psycopg.Connection, layer_id: str, target: str) -> Pushed | None:
    row = conn.execute("SELECT identifier, version, payload_sha256, pushed_at FROM geocloud.publications "
                       "WHERE layer = %s AND target = %s", (layer_id, target)).fetchone()
    return Pushed(*row) if row else None


def record_success(conn: psycopg.Connection, layer_id: str, target: str, identifier: str, version: int,
                   payload_sha256: str, operator: str, action: str, mark: str | None) -> None:
    with conn.transaction():
        conn.execute(
            "INSERT INTO geocloud.publications (layer, target, identifier, version, payload_sha256, pushed_by, "
            "quality_mark) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (layer, target) DO UPDATE SET "
            "identifier = EXCLUDED.identifier, version = EXCLUDED.version, payload_sha256 = EXCLUDED.payload_sha256, "
            "pushed_at = now(), pushed_by = EXCLUDED.pushed_by, quality_mark = EXCLUDED.quality_mark",
            (layer_id, target, identifier, version, payload_sha256, operator, mark))
        attempt(conn, layer_id, target, identifier, version, action, True, None, operator)


def attempt(conn: psycopg.Connection, layer_id: str, target: str, identifier: str, version: int | None, action: str,
            ok: bool, message: str | None, operator: str) -> None:
    conn.execute("INSERT INTO geocloud.publish_attempts (layer, target, identifier, version, action, ok, message, "
                 "operator) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                 (layer_id, target, identifier, version, action, ok, message, operator))


def status(conn: psycopg.Connection) -> list[dict]:
    """Per layer and target: the live version, the version pushed, when, and the last failure since."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT p.layer, p.target, p.identifier, p.version AS pushed_version, v.version AS live_version, "
            "p.pushed_at, p.pushed_by, p.quality_mark, (v.version IS DISTINCT FROM p.version) AS stale, "
            "(SELECT a.message FROM geocloud.publish_attempts a WHERE a.layer = p.layer AND a.target = p.target "
            " AND NOT a.ok AND a.at > p.pushed_at ORDER BY a.id DESC LIMIT 1) AS last_error "
            "FROM geocloud.publications p LEFT JOIN geocloud.layer_versions v ON v.layer = p.layer AND v.state = 'live' "
            "ORDER BY p.layer, p.target").fetchall()


