"""``geocloud audit``: read the audit trail (reads of non-public layers, key and agency changes, and
every management action with its before and after), as ``GET /manage/audit`` does over HTTP."""

import json

import typer
from rich.table import Table

from geocloud import db
from geocloud.access import audit as audit_log
from geocloud.cli.output import console, print_json


def audit(layer: str = typer.Option(None, "--layer", help="Only records on this layer"),
          actor: str = typer.Option(None, "--actor", help="Only records by this principal (as recorded) or agency"),
          agency: str = typer.Option(None, "--agency", help="Only records of principals of this agency"),
          since: str = typer.Option(None, "--since", help="ISO date or time, or e.g. 7d, 12h back from now"),
          limit: int = typer.Option(200, "--limit", min=1, max=audit_log.MAX_READ),
          as_json: bool = typer.Option(False, "--json", help="Print the records as JSON")):
    """Print the audit trail, newest first: who, when, which layer, what, before and after."""
    start = audit_log.parse_since(since) if since else None
    with db.connect() as conn:
        rows = audit_log.read(conn, layer=layer, actor=actor, agency=agency, since=start, limit=limit)
    if as_json:
        print_json(rows)
        return
    table = Table(title="audit")
    for col in ("at", "action", "principal", "agency", "layer", "surface", "change"):
        table.add_column(col)
    for r in rows:
        change = r["detail"] if r["before"] is None and r["after"] is None else {"before": r["before"],
                                                                                  "after": r["after"]}
        table.add_row(r["at"][:19].replace("T", " "), r["action"], r["principal"] or "", r["agency"] or "",
                      r["layer"] or "", r["surface"] or "", json.dumps(change, ensure_ascii=False)[:80])
    console.print(table)
