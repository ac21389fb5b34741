"""The portal's language: Traditional Chinese (zh-TW) first, English one click away.

The rule, in order: ``lang`` in the query (``zh-TW`` or ``en``; the language switch adds it, and
the answer remembers it in the ``geocloud_lang`` cookie for the pages after); else that cookie; else
``Accept-Language`` read as the API reads it (``features.requested_language``: the most preferred of
Chinese and English, English for other languages); else zh-TW. So a bookmark with ``lang=`` always
shows its language, and one click on the switch holds for the rest of the visit.
"""

from urllib.parse import urlencode

from starlette.requests import Request

from geocloud.serve.ogcapi.features import ENGLISH, requested_language

ZH, EN = "zh-TW", "en"
COOKIE = "geocloud_lang"
HTML_LANG = {ZH: "zh-Hant-TW", EN: "en"}  # BCP 47 tags for <html lang>: the script says Traditional
OTHER = {ZH: EN, EN: ZH}
SWITCH_LABEL = {ZH: "English", EN: "中文"}  # the switch names the language it leads to, in that language


def page_language(request: Request) -> str:
    """zh-TW or en, by the rule in the module's docstring."""
    if "lang" not in request.query_params and request.cookies.get(COOKIE) in (ZH, EN):
        return request.cookies[COOKIE]
    return EN if requested_language(request) == ENGLISH else ZH


def with_query(request: Request, base: str, name: str, value: str) -> str:
    """This page's URL (under ``base``, the URL the client reached) with one query parameter set."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k != name] + [(name, value)]
    return f"{base}{request.url.path}?{urlencode(query)}"


class Texts:
    """The template's ``_``: ``_("圖層", "Layers")`` is the text in the page's language, and ``tr``
    picks a catalog text (``I18n``) likewise. The two languages sit side by side in the template,
    so a page cannot lose one of them."""

    def __init__(self, lang: str):
        self.lang = lang

    def __call__(self, zh_tw: str, en: str) -> str:
        return en if self.lang == EN else zh_tw

    def tr(self, text) -> str:
        return "" if text is None else text.get(self.lang)
