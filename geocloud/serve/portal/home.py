"""The portal's home: search and browse the layers the caller may read (``/`` and ``/collections``
when a browser asks). Served without JavaScript: the search is a GET form, its filters are selects,
the results a paged list of links to each layer's page."""

from starlette.requests import Request
from starlette.responses import Response

from geocloud.catalog import get_catalog
from geocloud.serve import guard
from geocloud.serve.http import bad_parameter, base_url
from geocloud.serve.portal import labels
from geocloud.serve.portal.i18n import Texts, page_language, with_query
from geocloud.serve.portal.render import portal_page, render
from geocloud.serve.portal.search import FILTERS, facets, index, search
from geocloud.serve.state import snapshot

PAGE_SIZE = 20
MAX_QUERY = 200


def _page_number(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise bad_parameter("page", f"{raw!r} is not a page number; use 1, 2, ...")
    return int(raw)


@portal_page
async def page(request: Request) -> Response:
    q = request.query_params.get("q", "").strip()
    if len(q) > MAX_QUERY:
        raise bad_parameter("q", f"at most {MAX_QUERY} characters; shorten the search")
    number = _page_number(request)
    catalog, live, visible = get_catalog(), snapshot().layers, guard.visible_layers()
    entries = [e for i, e in index(catalog).items() if i in visible and i in live]
    filters = {k: request.query_params.get(k, "") for k in FILTERS}
    found = search(entries, q, filters)
    shown = found[(number - 1) * PAGE_SIZE:number * PAGE_SIZE]
    pages = max(1, -(-len(found) // PAGE_SIZE))
    _ = Texts(page_language(request))
    visible_values = facets(entries)
    counts = facets(search(entries, q, {})) if q else visible_values  # what each filter leaves of the keyword's matches
    for name, value in filters.items():  # a chosen value stays chosen with nothing left, if a visible layer has it
        if value in visible_values[name]:
            counts[name].setdefault(value, 0)
    choices = {name: [(value, labels.facet_label(name, value, _, catalog), n) for value, n in sorted(values.items())]
               for name, values in counts.items()}
    return render(request, "home.html", q=q, filters=filters, found=found, shown=shown, number=number,
                  pages=pages, choices=choices, labels=labels, live=live, catalog=catalog,
                  searched=bool(q or any(filters.values())),
                  page_href=lambda n: with_query(request, base_url(request), "page", str(n)))
