"""Loading a layer's data over HTTP: ``POST /manage/layers/{id}/data`` runs the uploaded file through
the same ETL as ``geocloud etl run`` (serialized per layer by the ETL's own lock) on a thread of its
own, and waits up to ``?wait=`` seconds for it: a load done by then is answered with its report
(200), a longer one with 202 and the URL of ``GET /manage/runs/{run}``, which says how it stands
and, once finished, what it did. The uploaded file is removed when the run ends.

``?force=true`` publishes what the ETL's guard would stop (a load removing much of the live layer,
changing its geometry type or moving its extent), as the CLI's ``--force``: whoever may load the
layer may force it (its owner agency's editors know their data best), and the override is kept in
the run's record and the audit."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from geocloud.db.pool import write_pool
from geocloud.errors import GeocloudError, NotFound
from geocloud.etl import runs
from geocloud.etl.guard import OVERRIDE
from geocloud.etl.run import run_pipeline
from geocloud.serve.guard import current, unauthorized
from geocloud.serve.http import HTTPError, base_url
from geocloud.serve.manage.acting import (
    as_principal,
    audited,
    fresh_catalog,
    json_answer,
)
from geocloud.serve.manage.permission import manager
from geocloud.serve.manage.upload import receive, source_format

WAIT = 20  # seconds a load is waited for by default before the answer is 202 and a run URL
MAX_WAIT = 600
_loads = ThreadPoolExecutor(4, thread_name_prefix="geocloud-manage-load")  # runs outlive their request


def _boolean(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "false").lower()
    if value not in ("true", "false"):
        raise HTTPError(400, "InvalidParameterValue", f"{name}: {value!r} is not true or false")
    return value == "true"


def _wait(request: Request) -> int:
    value = request.query_params.get("wait", str(WAIT))
    if not value.isdigit() or int(value) > MAX_WAIT:
        raise HTTPError(400, "InvalidParameterValue", f"wait: {value!r} is not a number of seconds from 0 to {MAX_WAIT}")
    return int(value)


UPLOADED = "the uploaded file"
SERVER_ONLY = ("report_path",)  # where the server keeps a run's files: not the caller's business


def _unplaced(value, path: Path):
    """``value`` with the upload's place on the server (uploads/upload-….csv) named as the uploaded
    file: an answer or an audit record an agency reads never tells the server's folders."""
    if isinstance(value, str):
        for form in (str(path.resolve()), str(path), path.name):
            value = value.replace(form, UPLOADED)
        return value
    if isinstance(value, dict):
        return {k: _unplaced(v, path) for k, v in value.items() if k not in SERVER_ONLY}
    if isinstance(value, list):
        return [_unplaced(v, path) for v in value]
    return value


def _load(layer_id: str, path: Path, dry_run: bool, force: bool, principal):
    try:
        report = run_pipeline(layer_id, path, dry_run=dry_run, force=force)
    except GeocloudError as exc:
        exc.what, exc.where, exc.fix = (_unplaced(x, path) for x in (exc.what, exc.where, exc.fix))
        audited(principal, "layer-load-failed", layer_id, {"dry_run": dry_run, "force": force, "error": str(exc)})
        raise
    audited(principal, "layer-planned" if dry_run else "layer-loaded", layer_id,
            {"run": report.run_id, "status": report.status, "counts": report.counts, "versions": report.versions,
             "force": force, "guard": report.guard})
    return json_answer(_unplaced(report.as_dict(), path))


def _load_then_remove(layer_id: str, path: Path, dry_run: bool, force: bool, principal):
    override = OVERRIDE.set("send the file again with ?force=true")
    try:
        return as_principal(principal, _load, layer_id, path, dry_run, force, principal)
    finally:
        OVERRIDE.reset(override)
        path.unlink(missing_ok=True)


def _run_of(path: Path) -> int | None:
    """The run loading ``path`` (each upload has a file of its own), once it is recorded (on the
    primary: a replica may not have it yet)."""
    with write_pool().connection() as conn:
        row = conn.execute("SELECT id FROM geocloud.etl_runs WHERE source_path = %s ORDER BY id DESC LIMIT 1",
                           (str(path.resolve()),)).fetchone()
    return row and row[0]


async def post_data(request: Request):
    layer_id = request.path_params["layer_id"]
    principal = manager("load", layer_id, fresh_catalog())
    dry_run, force, wait = _boolean(request, "dry_run"), _boolean(request, "force"), _wait(request)
    path = await receive(request, source_format(request))
    loading = asyncio.wrap_future(_loads.submit(_load_then_remove, layer_id, path, dry_run, force, principal))
    deadline = time.monotonic() + wait
    while True:
        await asyncio.wait({loading}, timeout=max(0.0, min(0.2, deadline - time.monotonic())))
        if loading.done():
            return loading.result()
        if time.monotonic() >= deadline and (run := await run_in_threadpool(_run_of, path)) is not None:
            href = f"{base_url(request)}/manage/runs/{run}"
            return json_answer({"run": run, "state": "running", "href": href}, 202, {"Location": href})


def _run(run_id: int) -> dict | None:
    with write_pool().connection() as conn:  # a run polled while it runs: the primary, never behind
        try:
            return runs.get(conn, run_id)
        except NotFound:
            return None


async def get_run(request: Request):
    if current.get().anonymous:
        raise unauthorized("managing layers needs a credential (an API key, token or JWT of an agency)")
    run_id = request.path_params["run_id"]
    row = await run_in_threadpool(_run, run_id) if run_id < 2 ** 31 else None
    if row is None:
        raise HTTPError(404, "NotFound", f"no run {run_id}")
    catalog = fresh_catalog()
    for layer_id in row["layers"]:  # who may load each of its layers may see the run
        manager("load", layer_id, catalog)
    answer = {"run": row["id"], "state": row["status"], "progress": _progress(row), **{k: row[k] for k in (
        "pipeline", "layers", "dry_run", "operator", "started_at", "finished_at", "diff", "quality", "guard",
        "error")}, "counts": None if row["status"] in ("running", "interrupted") else row["counts"]}
    return json_answer(_unplaced(answer, Path(row["source_path"])) if row.get("source_path") else answer)


def _progress(row: dict) -> dict:
    """How far the run got: while it runs (or where it died: interrupted), what ``runs.Recorder``
    last wrote (stage, rows read so far, the total when the source says it); once it ended, the rows
    read and the seconds each stage took."""
    if row["status"] in ("running", "interrupted"):
        return {"stage": None, "read": 0, "total": None, **row["counts"]}
    read = row["counts"].get("read")
    return {"stage": "finished", "read": read, "total": read, "stages": row["timings"]}


routes = [Route("/manage/layers/{layer_id}/data", post_data, methods=["POST"]),
          Route("/manage/runs/{run_id:int}", get_run, methods=["GET"])]
