"""OpenAPI 3.0 building blocks (parameters, answers) for the serve modules' ``OPENAPI_PATHS``.

Each serve module declares the path items of the routes it serves in its own ``OPENAPI_PATHS``
(serve/app.py merges every module's, and tests/test_api.py checks them against the routes), built
from the blocks below; the answers every route can give (400, 401, 429, 500, 503) are added to each
operation by the document builder (ogcapi/pygeoapi_config.py), which also holds the shared
components (``#/components/...``). titiler's routes are described
from FastAPI's own document of them (so every parameter titiler accepts is listed, and stays
listed when titiler changes), turned from OpenAPI 3.1 into 3.0 (``anyOf`` with ``null``
dropped, numeric ``exclusiveMinimum``, ``const``, schema references inlined) and given
geocloud's bounds (rasters.LIMITS) and answers. Errors refer only to the shared responses of
ogcapi/pygeoapi_config.py.
"""

from typing import Any

ERRORS = ("400", "InvalidParameter"), ("401", "Unauthorized"), ("404", "NotFound"), ("429", "TooManyRequests"), \
    ("500", "ServerError"), ("503", "ServiceUnavailable")
OBJECT = {"type": "object"}
BINARY = {"type": "string", "format": "binary"}
LINKS = {"type": "array", "items": {"$ref": "#/components/schemas/link"}}
XML = "application/xml"


def ref(kind: str, name: str) -> dict:
    """A reference to a shared component, e.g. ``ref("responses", "NotFound")``."""
    return {"$ref": f"#/components/{kind}/{name}"}


def ok(description: str, schema: dict, *media: str) -> dict:
    return {"description": description, "content": content(*media, schema=schema)}


def get(summary: str, tag: str, answer: dict, *parameters: dict, more: dict | None = None) -> dict:
    """A path item with one GET operation answering ``answer`` (200) and ``more``."""
    return {"get": {"summary": summary, "tags": [tag], "parameters": list(parameters),
                    "responses": {"200": answer, **(more or {})}}}


NOT_FOUND = {"404": ref("responses", "NotFound")}
NOT_MODIFIED = {"304": ref("responses", "NotModified")}
COLLECTION = ref("parameters", "collectionId")
LANG = ref("parameters", "lang")
FILE = {"description": "the file", "content": {"*/*": {"schema": BINARY}}}


def responses(ok: dict, *, not_found: bool = True) -> dict:
    """``ok`` (the 200 response) with every shared error answer (404 where a path names a layer)."""
    return {"200": ok, **{status: {"$ref": f"#/components/responses/{name}"} for status, name in ERRORS
                          if status != "404" or not_found}}


def content(*media: str, schema: dict | None = None) -> dict:
    return {m: {"schema": schema or (OBJECT if "json" in m else {"type": "string", "format": "binary"})}
            for m in media}


def path_parameter(name: str, description: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema or {"type": "string"}}


def query_parameter(name: str, description: str, schema: dict, **extra) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema, **extra}


FILE_PATH = path_parameter("path", "the file's path")


def to_30(schema: Any, definitions: dict) -> Any:
    """A FastAPI (OpenAPI 3.1) schema as plain OpenAPI 3.0 schema."""
    if isinstance(schema, list):
        return [to_30(s, definitions) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return to_30(definitions.get(schema["$ref"].rsplit("/", 1)[-1], OBJECT), definitions)
    out = {}
    for key, value in schema.items():
        if key == "anyOf":
            kept = [s for s in value if s.get("type") != "null"]
            if len(kept) == 1:
                out.update(to_30(kept[0], definitions))
            else:
                out["anyOf"] = to_30(kept, definitions)
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out.update({"minimum" if key == "exclusiveMinimum" else "maximum": value, key: True})
        elif key == "const":
            out["enum"] = [value]
        elif key not in ("examples", "title", "discriminator"):
            out[key] = to_30(value, definitions)
    return out
