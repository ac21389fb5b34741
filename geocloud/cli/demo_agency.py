"""The demo's agency layer: the sample city's YouBike stations registered over the ``/manage`` HTTP
API the way the Transportation Bureau would (its editor's key: the entry, the CSV, publish) and,
being public, approved by the GIS office's review (an admin's), so that a newcomer sees the whole
path, and the curl lines to walk it again."""

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from geocloud import db
from geocloud.access import keys as api_keys
from geocloud.catalog import get_catalog
from geocloud.errors import GeocloudError

APPROVAL = {"decision": "approve", "comment": "欄位與座標已檢核，同意開放。"}  # the GIS office's review
READY_WITHIN = 180  # seconds a server may take to answer /health/ready (it imports everything first)


def agency_keys(owner: str) -> tuple[str, str]:
    """A key of ``owner``'s editor and one of the GIS office's admin, each valid 7 days."""
    with db.transaction() as conn:
        return (api_keys.create(conn, owner, "demo data steward", "editor", None, api_keys.parse_expiry("7d")),
                api_keys.create(conn, get_catalog().gis_office, "demo GIS office", "admin", None,
                                api_keys.parse_expiry("7d")))


def wait_ready(base: str, alive=lambda: True) -> None:
    deadline = time.monotonic() + READY_WITHIN
    while time.monotonic() < deadline and alive():
        try:
            if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise GeocloudError(f"the server at {base} did not become ready", fix="see its log above")


@contextmanager
def brief_server(port: int, log: Path):
    """``geocloud serve`` on 127.0.0.1:``port`` in a child process until the block ends (its log in ``log``)."""
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "geocloud", "serve", "--port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT, env=os.environ.copy())
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, lambda: proc.poll() is None)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def register(base: str, folder: Path, manifest: dict, editor: str, admin: str) -> list[tuple[str, str, str]]:
    """Each agency layer of the sample registered, loaded and published over HTTP: (step, status, outcome)."""
    steps = []
    with httpx.Client(base_url=base, timeout=600) as client:
        for layer_id, spec in manifest["agency_layers"].items():
            entry = json.loads((folder / spec["entry"]).read_text(encoding="utf-8"))
            as_editor, as_admin = {"X-API-Key": editor}, {"X-API-Key": admin}
            outcome = None  # the last step's
            for step, method, path, kwargs in (
                    ("entry (editor)", "PUT", "", {"json": entry, "headers": as_editor}),
                    ("data (editor)", "POST", "/data?wait=600", {
                        "content": (folder / spec["source"]).read_bytes(),
                        "headers": {**as_editor, "Content-Type": "text/csv"}}),
                    ("publish (editor)", "POST", "/publish", {"headers": as_editor}),
                    ("review (GIS office admin)", "POST", "/review", {"json": APPROVAL, "headers": as_admin})):
                if path == "/review" and outcome != "pending_review":  # the demo run again: live already
                    steps.append((f"{layer_id}: {step}", "-", f"not needed ({outcome})"))
                    continue
                r = client.request(method, f"/manage/layers/{layer_id}{path}", **kwargs)
                body = r.json()
                if r.status_code >= 400:
                    raise GeocloudError(f"{method} /manage/layers/{layer_id}{path} answered {r.status_code}: "
                                        f"{body.get('description', body)}")
                outcome = body.get("state") or f"{body.get('status')}, {body.get('counts', {}).get('loaded')} loaded"
                steps.append((f"{layer_id}: {step}", f"{method} {r.status_code}", outcome))
    return steps


def curl_lines(base: str, folder: Path, manifest: dict, editor: str, admin: str) -> str:
    """What a newcomer types to walk the same path (the data steps of each agency layer)."""
    lines = [f'E="X-API-Key: {editor}"   # an editor of the owner agency (valid 7 days)',
             f'A="X-API-Key: {admin}"   # an admin of the GIS office (valid 7 days)',
             f'curl -H "$E" {base}/manage/layers']
    for layer_id, spec in manifest["agency_layers"].items():
        url, csv = f"{base}/manage/layers/{layer_id}", folder / spec["source"]
        lines += [f'curl -H "$E" -X PUT --json @{folder / spec["entry"]} {url}',
                  f'curl -H "$E" -H "Content-Type: text/csv" --data-binary @{csv} "{url}/data?dry_run=true"',
                  f'curl -H "$E" -H "Content-Type: text/csv" --data-binary @{csv} {url}/data',
                  f'curl -H "$E" -X POST {url}/publish   # public: pending the GIS office\'s review',
                  (f"curl -H \"$A\" --json '{json.dumps(APPROVAL, ensure_ascii=False)}' {url}/review"
                   "   # the GIS office approves"),
                  f'curl "{base}/collections/{layer_id}/items?f=json&limit=3"']
    return "\n".join(f"  {line}" for line in lines)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
