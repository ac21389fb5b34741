"""``geocloud agencies`` and ``geocloud keys``: principals and their keys (``geocloud audit``: cli/audit.py)."""

from datetime import datetime, timedelta, timezone

import typer
from rich.table import Table

from geocloud import db
from geocloud.access import agencies as agency_table
from geocloud.access import audit as audit_log
from geocloud.access import keys as api_keys
from geocloud.catalog import get_catalog
from geocloud.cli.output import console, print_json
from geocloud.config import operator
from geocloud.errors import ConfigError

agencies = typer.Typer(help="Agencies whose principals hold API keys.", no_args_is_help=True)
keys = typer.Typer(help="API keys: create, list, revoke, rotate.", no_args_is_help=True)


@agencies.command("add")
def agencies_add(code: str = typer.Argument(...), name_zh: str = typer.Option(..., "--name-zh"),
                 name_en: str = typer.Option(..., "--name-en"),
                 external: bool = typer.Option(False, "--external", help="Not a city agency (no internal layers)")):
    """Add (or update) an agency."""
    with db.transaction() as conn:
        agency_table.add(conn, code, name_zh, name_en, not external)
        audit_log.record(conn, "agency-added", operator(), code, detail={"name": name_zh})
    console.print(f"agency {code} saved")


@agencies.command("delete")
def agencies_delete(code: str = typer.Argument(...)):
    """Delete an agency: every key of it stops working at once."""
    with db.transaction() as conn:
        done = conn.execute("UPDATE geocloud.agencies SET deleted_at = now() WHERE code = %s AND deleted_at IS NULL "
                            "RETURNING code", (code,)).fetchone()
        if done is None:
            raise ConfigError(f"no agency {code!r}", fix="see `geocloud agencies list`")
        audit_log.record(conn, "agency-deleted", operator(), code)
    console.print(f"agency {code} deleted; its keys no longer work")


@agencies.command("sync")
def agencies_sync():
    """Add every agency of agencies.yml (the registry layer grants name) to the database, and
    record in the audit trail every change of the catalog's layer grants since the last sync."""
    catalog = get_catalog()
    with db.transaction() as conn:
        changed = agency_table.sync(conn, catalog, operator())
    console.print(f"{len(catalog.agencies)} agencies in the database; {changed} layer access change(s) recorded")


@agencies.command("list")
def agencies_list():
    """List agencies."""
    table = Table(title="agencies")
    for col in ("code", "名稱", "name", "city agency", "deleted"):
        table.add_column(col)
    with db.connect() as conn:
        for row in conn.execute("SELECT code, name_zh, name_en, city_agency, deleted_at FROM geocloud.agencies ORDER BY code"):
            table.add_row(row[0], row[1], row[2], "yes" if row[3] else "no", str(row[4] or ""))
    console.print(table)


@keys.command("create")
def keys_create(agency: str = typer.Option(..., "--agency"), role: str = typer.Option(..., "--role"),
                principal: str = typer.Option(None, "--principal", help="The person or service (default: agency/role)"),
                layers: str = typer.Option(None, "--layers", help="Comma-separated layer ids the key is limited to"),
                expires: str = typer.Option(None, "--expires", help="e.g. 90d, 12h or 2027-06-30")):
    """Create a key. The secret is printed once, on the last line; only a slow hash is stored."""
    scope = [x.strip() for x in layers.split(",")] if layers else None
    expires_at = api_keys.parse_new_expiry(expires)
    if scope:
        unknown = [x for x in scope if x not in get_catalog().layers]
        if unknown:
            raise ConfigError(f"unknown layer(s) {', '.join(unknown)}", where="--layers",
                              fix="see `geocloud layers list`")
    with db.transaction() as conn:
        key = api_keys.create(conn, agency, principal or f"{agency}/{role}", role, scope, expires_at)
        key_id = api_keys.KEY.match(key).group(1)
        audit_log.record(conn, "key-created", operator(), agency, detail={"key": key_id, "role": role, "layers": scope})
    console.print(f"key {key_id} for {agency} ({role}) created; keep the secret below, it is not shown again:")
    print(key)


@keys.command("list")
def keys_list(as_json: bool = typer.Option(False, "--json")):
    """List keys (never their secrets)."""
    with db.connect() as conn:
        rows = api_keys.listing(conn)
    cols = ("id", "agency", "principal", "role", "layers", "created", "expires", "revoked", "rotated_to", "grace_until")
    if as_json:
        print_json([dict(zip(cols, r)) for r in rows])
        return
    table = Table(title="API keys")
    for col in cols:
        table.add_column(col)
    for r in rows:
        table.add_row(*[(",".join(v) if isinstance(v, list) else str(v or "")) for v in r])
    console.print(table)


@keys.command("revoke")
def keys_revoke(key_id: str = typer.Argument(...)):
    """Revoke a key at once (workers that had just verified it accept it for at most 30 s more)."""
    with db.transaction() as conn:
        api_keys.revoke(conn, key_id)
        audit_log.record(conn, "key-revoked", operator(), None, detail={"key": key_id})
    console.print(f"key {key_id} revoked")


@keys.command("rotate")
def keys_rotate(key_id: str = typer.Argument(...),
                grace: str = typer.Option("24h", "--grace", help="How long the old key stays valid")):
    """Replace a key; the old one keeps working for the grace period. Prints the new secret last."""
    until = api_keys.parse_expiry(grace)
    with db.transaction() as conn:
        new = api_keys.rotate(conn, key_id, until - datetime.now(timezone.utc) if until else timedelta(0))
        audit_log.record(conn, "key-rotated", operator(), None, detail={"key": key_id, "new": api_keys.KEY.match(new).group(1)})
    console.print(f"key {key_id} rotated; the old key works until {until:%Y-%m-%d %H:%M %Z}. New secret:")
    print(new)

