"""The stewards' pages (for editors and admins): my layers, register a layer, upload data and see
its validation report before publishing it, and the GIS office's review queue.

One implementation of each action: these pages hold no management logic. Their script
(static/steward.js) makes the /manage JSON API's own requests from the browser, with the session's
CSRF token in ``X-CSRF-Token`` (serve/session.py), so registering (PUT, the same validation and
422s naming key paths), uploading (the file streamed straight into POST .../data, under the same
limits), publishing, rolling back, retiring and reviewing are checked, done and audited in one
place, the routes of serve/manage/. The server side here only says who may open which page, with
the same permission checks (``manage.permission``), and hands each page its texts in the page's
language. The pages need JavaScript, as the API they drive does; a <noscript> says so.
"""

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from geocloud.access.policy import is_admin
from geocloud.catalog.models import LAYER_ID
from geocloud.serve import guard, session
from geocloud.serve.http import HTTPError, base_url
from geocloud.serve.manage.acting import fresh_catalog
from geocloud.serve.manage.permission import manager, may_manage_some
from geocloud.serve.openapi30 import path_parameter
from geocloud.serve.portal import labels
from geocloud.serve.portal.i18n import Texts, page_language
from geocloud.serve.portal.render import portal_page, render
from geocloud.serve.portal.signin import PAGE, PERSONAL, SEE_OTHER

FORMATS = {"csv": ".csv", "geojson": ".geojson,.json", "geopackage": ".gpkg", "shapefile": ".zip", "kml": ".kml",
           "geotiff": ".tif,.tiff"}  # POST .../data?format=, and the file names each is picked by
STATES = {"draft": ("草稿", "Draft"), "live": ("已上線", "Live"), "pending_review": ("待審核", "Pending review"),
          "rejected": ("已退回", "Rejected"), "retired": ("已下架", "Retired")}
# what the script says, in the page's language (the pages' own text is in their templates)
SAID = {
    "loading": ("載入中…", "Loading…"), "none": ("（沒有）", "(none)"), "manage": ("上傳與管理", "Upload and manage"),
    "problems": ("請修正以下問題：", "Please correct these:"), "fix": ("修正方式：", "How to fix: "),
    "saved": ("已登錄。前往上傳資料…", "Registered. On to uploading its data…"),
    "checking": ("上傳並檢查中（試算，不會發布）…", "Uploading and checking (a dry run: nothing is published)…"),
    "loading_file": ("上傳並載入中…", "Uploading and loading…"), "running": ("處理中…", "Working…"),
    "pick": ("請先選擇檔案。", "Choose a file first."),
    "planned": ("檢查完成：可以載入。", "Checked: this file can be loaded."),
    "published": ("已載入：新版本已產生。", "Loaded: a new version is made."),
    "unchanged": ("檔案與現行版本相同，沒有變更。", "The file is the same as the live version: nothing changed."),
    "failed": ("這個檔案無法載入，現行資料未變更。", "This file cannot be loaded; nothing live changed."),
    "refused": ("保護機制拒絕了這次載入，現行資料未變更。", "The guard refused this load; nothing live changed."),
    "fix_rows": ("請修正被拒絕的資料列後重新上傳。", "Correct the rejected rows and upload the file again."),
    "confirm_load": ("確定要載入這個檔案嗎？", "Load this file?"),
    "confirm_publish": ("確定要發布這個圖層嗎？公開圖層需經資訊中心審核。",
                        "Publish this layer? A public layer awaits the GIS office's review."),
    "confirm_rollback": ("確定要回復到前一版嗎？", "Roll back to the previous version?"),
    "confirm_retire": ("確定要下架這個圖層嗎？它將從所有服務中移除，歷史會保留。",
                       "Retire this layer? It leaves every surface; its history stays."),
    "confirm_approve": ("確定核准這個圖層公開嗎？", "Approve this layer as public?"),
    "confirm_reject": ("確定退回這個圖層嗎？", "Reject this layer?"),
    "done_publish": ("已發布。", "Published."), "done_rollback": ("已回復。", "Rolled back."),
    "done_retire": ("已下架。", "Retired."), "done_approve": ("已核准。", "Approved."), "done_reject": ("已退回。", "Rejected."),
    "state": ("狀態：", "State: "), "row": ("第 {n} 列", "row {n}"), "more": ("（另有 {n} 列）", "({n} more rows)"),
    "approve": ("核准", "Approve"), "reject": ("退回", "Reject"), "comment": ("意見", "Comment"),
    "review_approve": ("資訊中心已核准", "Approved by the GIS office"),
    "review_reject": ("資訊中心已退回", "Rejected by the GIS office"),
    "no_pending": ("沒有待審核的圖層。", "No layer awaits review."),
    "inferred": ("已從檔案標題列帶入 {n} 個欄位。", "{n} fields taken from the file's header."),
}
RUNS = {"running": ("執行中", "running"), "planned": ("試算完成", "planned"), "published": ("已載入", "loaded"),
        "unchanged": ("無變更", "unchanged"), "failed": ("失敗", "failed"), "refused": ("被拒絕", "refused"),
        "interrupted": ("中斷", "interrupted"), "dry_run": ("試算", "dry run")}
GEOMETRIES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon")
FIELD_TYPES = ("text", "integer", "bigint", "double", "boolean", "date", "timestamp")


def _steward(request: Request) -> Response | None:
    """A redirect to /signin unless the browser is signed in; 403 unless its principal manages layers."""
    principal = guard.current.get()
    if principal.kind != "session":
        return RedirectResponse(f"{base_url(request)}/signin{'?expired=1' if session.refused(request) else ''}",
                                status_code=303, headers=PERSONAL)
    if not may_manage_some(principal):
        raise HTTPError(403, "Forbidden", f"role {principal.role!r} reads layers only; managing them needs the role "
                                          "'editor' (or the GIS office's 'admin')")
    return None


def _page(request: Request, template: str, **context) -> Response:
    principal = guard.current.get()
    _ = Texts(page_language(request))
    said = {"said": {k: _(*v) for k, v in SAID.items()}, "states": {k: _(*v) for k, v in STATES.items()},
            "levels": {k: _(*v) for k, v in labels.LEVELS.items()},
            "runs": {k: _(*v) for k, v in RUNS.items()}}
    return render(request, template, headers=PERSONAL, csrf=session.csrf_token(request), said=said,
                  admin=is_admin(principal, fresh_catalog()), levels=labels.LEVELS, **context)


@portal_page
async def my_layers(request: Request) -> Response:
    return _steward(request) or _page(request, "steward.html")


@portal_page
async def register(request: Request) -> Response:
    return _steward(request) or _page(request, "steward_register.html", geometries=GEOMETRIES,
                                      field_types=FIELD_TYPES, frequencies=labels.FREQUENCIES, kinds=labels.KINDS,
                                      id_pattern=LAYER_ID)


@portal_page
async def layer(request: Request) -> Response:
    """A layer's upload, report and actions. Asked first, as /manage asks: a layer the caller cannot
    read is not there (401 anonymous, else 404, as on every surface), one they may not load is a 403."""
    layer_id = request.path_params["layer_id"]
    manager("load", layer_id, fresh_catalog())
    return _steward(request) or _page(request, "steward_layer.html", layer_id=layer_id, formats=FORMATS)


@portal_page
async def review(request: Request) -> Response:
    if redirect := _steward(request):
        return redirect
    if not is_admin(guard.current.get(), fresh_catalog()):
        raise HTTPError(403, "Forbidden", "only the GIS office's admins review layers")
    return _page(request, "steward_review.html")


routes = [Route("/steward", my_layers, methods=["GET"]), Route("/steward/register", register, methods=["GET"]),
          Route("/steward/review", review, methods=["GET"]),
          Route("/steward/layers/{layer_id}", layer, methods=["GET"])]


# refusals are the portal's pages (render.portal_page), not the API's JSON
REFUSED = {"description": "a page saying why (not signed in, not there, not allowed)",
           "content": {"text/html": {"schema": {"type": "string"}}}}


def _page_item(summary: str, *parameters: dict) -> dict:
    return {"get": {"summary": summary, "tags": ["Portal"], "parameters": list(parameters),
                    "responses": {"200": PAGE, "303": SEE_OTHER, "401": REFUSED, "403": REFUSED, "404": REFUSED}}}


OPENAPI_PATHS = {
    "/steward": _page_item("my layers: the layers I manage, their state and actions (editors, admins)"),
    "/steward/register": _page_item("register a layer: its catalog entry as a form (PUT /manage/layers/{id})"),
    "/steward/review": _page_item("the GIS office's review queue: public layers awaiting approval (admins)"),
    "/steward/layers/{layer_id}": _page_item(
        "a layer's upload, validation report (a dry run first), publish, roll back and retire",
        path_parameter("layer_id", "the layer's id")),
}
