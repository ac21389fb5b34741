"""One way to answer with a page: ``render(request, template, **context)`` on the portal's layout.

Every page is server-rendered HTML that works without JavaScript; scripts (the map previews) only
add to it. Pages depend on who asks (which layers they may read) and on the language, so they are
``private`` and vary on both. Their Content-Security-Policy is headers.py's, the one every page
gets: only what geocloud serves (MapLibre starts its workers from ``blob:``).
"""

import functools
from pathlib import Path

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from geocloud.serve import guard
from geocloud.serve.http import HTTPError, base_url
from geocloud.serve.manage.permission import may_manage_some
from geocloud.serve.openapi30 import path_parameter
from geocloud.serve.portal.i18n import (
    COOKIE,
    HTML_LANG,
    OTHER,
    SWITCH_LABEL,
    Texts,
    page_language,
    with_query,
)

HERE = Path(__file__).parent
STATIC_PATH = "/portal/static"
ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                         autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True,
                         undefined=jinja2.StrictUndefined)
# (path, zh-TW, English) of the main navigation; the account entry depends on who asks, and an entry
# shows once the application serves its page (the sign-in and request pages come with their modules)
NAV = [("/", "圖層", "Layers"), ("/map/", "地圖", "Map"), ("/requests", "申請", "Requests")]
YEAR = 365 * 24 * 3600


def wants_html(request: Request) -> bool:
    """Does the client ask for a page? ``f=html``, or no ``f`` and a browser's ``Accept`` (text/html
    named before any JSON). API clients (``*/*``, JSON) keep getting JSON from the same URLs."""
    f = request.query_params.get("f")
    if f is not None:
        return f == "html"
    accept = request.headers.get("accept", "")
    html, json = accept.find("text/html"), accept.find("json")
    return html >= 0 and (json < 0 or html < json)


def _nav(request: Request, _: Texts) -> list[dict]:
    path = request.url.path
    principal = guard.current.get()
    items = NAV + ([("/steward", "管理圖層", "Manage layers")] if may_manage_some(principal) else []) \
        + [("/account", "帳號", "Account") if not principal.anonymous else ("/signin", "登入", "Sign in")]
    served = {getattr(route, "path", None) for route in request.app.routes}
    return [{"href": href, "label": _(zh, en),
             "current": path == href or (href != "/" and path.startswith(href.rstrip("/")))
             or (href == "/" and path.startswith("/collections"))} for href, zh, en in items
            if href in served or href.rstrip("/") in served]


def render(request: Request, template: str, status: int = 200, headers: dict | None = None,
           **context) -> HTMLResponse:
    """The page ``template`` (extending base.html) for this request, in the page's language."""
    lang = page_language(request)
    _ = Texts(lang)
    base = base_url(request)
    body = ENV.get_template(template).render(
        request=request, lang=lang, html_lang=HTML_LANG[lang], _=_, tr=_.tr, base=base,
        static=lambda name: f"{base}{STATIC_PATH}/{name}", principal=guard.current.get(),
        nav=_nav(request, _), switch_href=with_query(request, base, "lang", OTHER[lang]), switch_label=SWITCH_LABEL[lang],
        switch_lang=HTML_LANG[OTHER[lang]], **context)
    response = HTMLResponse(body, status_code=status, headers={
        "Content-Language": lang, "Cache-Control": "private, no-cache", "Vary": "Accept, Accept-Language",
        **(headers or {})})
    if "lang" in request.query_params:
        response.set_cookie(COOKIE, lang, max_age=YEAR, httponly=True, samesite="lax",
                            secure=request.url.scheme == "https")
    return response


routes = [Mount(STATIC_PATH, app=StaticFiles(directory=HERE / "static"), name="portal-static")]

OPENAPI_PATHS = {f"{STATIC_PATH}/{{path}}": {"get": {
    "summary": "the portal's stylesheet and scripts", "tags": ["Portal"],
    "parameters": [path_parameter("path", "the file's path")],
    "responses": {"200": {"description": "the file", "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
                  "404": {"$ref": "#/components/responses/NotFound"}}}}}


def portal_page(handler):
    """A page handler whose client mistakes (HTTPError: 400, 401, 404...) are answered as a page of
    the portal, not as the API's JSON. A 401 challenges with Bearer only: a browser then shows the
    page (with its sign-in link) rather than its password dialog, which Basic would open."""
    @functools.wraps(handler)
    async def answer(request: Request) -> Response:
        try:
            return await handler(request)
        except HTTPError as exc:
            headers = {k: v for k, v in exc.headers.items() if k.lower() != "www-authenticate"}
            if exc.status == 401:
                headers["WWW-Authenticate"] = 'Bearer realm="geocloud"'
            return render(request, "error.html", status=exc.status, headers={**headers, "Cache-Control": "no-store"},
                          error=exc)
    return answer
