"""The OpenAPI path items of the /manage routes (merged into the document by serve/app.py's
``described_paths``). Refusals use the shared responses of ogcapi/pygeoapi_config.py; a failed
action (409, 422) is answered with problem details, described here."""

from geocloud.catalog.models import LAYER_ID
from geocloud.serve.manage.upload import FORMATS, MEDIA_TYPES
from geocloud.serve.openapi30 import path_parameter, query_parameter

TAG = "Management"
_REF = "#/components/responses/{}".format
LAYER_PATH = path_parameter("layerId", "the layer's id (an agency layer; a core layer's data for GIS office admins)",
                          {"type": "string", "pattern": LAYER_ID})
PROBLEM = {"type": "object", "required": ["code", "description", "status"], "properties": {
    "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
    "code": {"type": "string"}, "description": {"type": "string"}, "detail": {"type": "string"},
    "where": {"type": "string", "nullable": True}, "fix": {"type": "string", "nullable": True},
    "keys": {"type": "array", "items": {"type": "string"}, "description": "the catalog entry's key paths named"}}}


def _problem(description: str) -> dict:
    return {"description": description, "content": {"application/problem+json": {"schema": PROBLEM}}}


def _json(description: str, schema: dict | None = None) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema or {"type": "object"}}}}


CONFLICT = _problem("the action conflicts with the layer's state: a core layer's id, another agency's id, another "
                    "run loading the layer, the ETL's guard, nothing to roll back to")
REFUSED = {"403": {"$ref": _REF("Forbidden")}, "404": {"$ref": _REF("NotFound")}, "409": CONFLICT}
STATES = ["draft", "live", "pending_review", "rejected", "retired"]
REVIEW = {"type": "object", "nullable": True, "description": "the GIS office's last decision on the layer",
          "properties": {"decision": {"type": "string", "enum": ["approve", "reject"]}, "comment": {"type": "string"},
                         "by": {"type": "string"}, "at": {"type": "string", "format": "date-time"}}}
STATE = _json("the layer's state after the action", {"type": "object", "required": ["id", "state"], "properties": {
    "id": {"type": "string"}, "state": {"type": "string", "enum": STATES}, "review": REVIEW}})
ENTRY = _json("the catalog entry as registered: owner, state, entry", {
    "type": "object", "required": ["id", "owner", "state", "entry"], "properties": {
        "id": {"type": "string"}, "owner": {"type": "string"}, "state": {"type": "string"},
        "entry": {"type": "object"}}})
MANAGED = {"type": "object", "required": ["id", "origin", "owner", "state"], "properties": {
    "id": {"type": "string"}, "origin": {"type": "string", "enum": ["core", "agency"]},
    "owner": {"type": "string", "nullable": True}, "state": {"type": "string", "enum": STATES},
    "access": {"type": "string"}, "live_version": {"type": "integer", "nullable": True},
    "last_run": {"type": "object", "nullable": True}, "review": REVIEW}}
LISTING = _json("the layers the caller manages", {"type": "object", "required": ["layers"], "properties": {
    "layers": {"type": "array", "items": MANAGED}}})
ONE = _json("the layer as the listing shows it, with its catalog entry and its last change", {
    "type": "object", "required": [*MANAGED["required"], "entry"], "properties": {
        **MANAGED["properties"], "entry": {"type": "object"}, "updated_by": {"type": "string", "nullable": True},
        "updated_at": {"type": "string", "format": "date-time", "nullable": True}}})
AUDIT = _json("the audit records, newest first", {"type": "object", "required": ["records"], "properties": {
    "records": {"type": "array", "items": {"type": "object", "required": ["id", "at", "action"], "properties": {
        "id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"}, "action": {"type": "string"},
        "principal": {"type": "string", "nullable": True}, "agency": {"type": "string", "nullable": True},
        "layer": {"type": "string", "nullable": True}, "surface": {"type": "string", "nullable": True},
        "before": {"nullable": True}, "after": {"nullable": True}, "detail": {"type": "object"}}}}}})
SOURCE_MEDIA = [*MEDIA_TYPES, "application/octet-stream"]


def _op(summary: str, ok: dict, *parameters: dict, more: dict | None = None, body: dict | None = None) -> dict:
    op = {"summary": summary, "tags": [TAG], "parameters": list(parameters),
          "responses": {"200": ok, **REFUSED, **(more or {})}}
    if body:
        op["requestBody"] = body
    return op


OPENAPI_PATHS = {
    "/manage/layers": {"get": {"summary": "the layers the caller manages, with state, live version, last run and owner",
                               "tags": [TAG], "parameters": [], "responses": {"200": LISTING}}},
    "/manage/layers/{layerId}": {
        "put": _op("register or change an agency layer's catalog entry (a new one is a draft)", ENTRY, LAYER_PATH,
                   query_parameter("owner", "the owner agency of a new layer (default: the caller's; other agencies' "
                                            "for GIS office admins only)", {"type": "string"}),
                   more={"201": ENTRY, "413": {"$ref": _REF("PayloadTooLarge")},
                         "422": _problem("the entry is not valid: the key paths, what is wrong and the fix")},
                   body={"required": True, "description": "the catalog entry, as in layers/*.yml",
                         "content": {"application/json": {"schema": {"type": "object"}}}}),
        "get": _op("one layer the caller manages: state, live version, last run, owner, last review and its entry",
                   ONE, LAYER_PATH),
        "delete": _op("retire an agency layer: off every surface, its history kept", STATE, LAYER_PATH),
    },
    "/manage/layers/{layerId}/data": {"post": _op(
        "load a source file into the layer through the ETL (or only plan it: dry_run)",
        _json("the run's report: status (published, unchanged, planned), counts, diff, quality, versions"), LAYER_PATH,
        query_parameter("dry_run", "true: read, validate, stage and diff only; change nothing", {"type": "boolean"}),
        query_parameter("force", "true: publish what the ETL's guard would stop (much of the live layer removed, its "
                                 "geometry type changed, its extent moved); recorded in the run and the audit",
                        {"type": "boolean"}),
        query_parameter("format", "the source's format, when the Content-Type does not say it",
                        {"type": "string", "enum": list(FORMATS)}),
        query_parameter("wait", "seconds to wait for the run: one done by then is answered with its report, a "
                                "longer one with 202 and its URL", {"type": "integer", "minimum": 0, "maximum": 600}),
        more={"202": _json("the run goes on: follow href (also Location) to GET /manage/runs/{run}", {
                  "type": "object", "required": ["run", "state", "href"], "properties": {
                      "run": {"type": "integer"}, "state": {"type": "string"}, "href": {"type": "string"}}}),
              "413": {"$ref": _REF("PayloadTooLarge")},
              "415": _json("the Content-Type names no source format and ?format= is not given",
                           {"$ref": "#/components/schemas/exception"}),
              "422": _problem("the file cannot be loaded (not the format it claims, rows rejected...); nothing changed")},
        body={"required": True, "description": "the source file (zipped Shapefile, GeoPackage, GeoJSON, CSV with "
                                               "X/Y, KML, GeoTIFF), streamed; GEOCLOUD_UPLOAD_MAX_BYTES at most",
              "content": {m: {"schema": {"type": "string", "format": "binary"}} for m in SOURCE_MEDIA}})},
    "/manage/runs/{runId}": {"get": {
        "summary": "a load's run: its state (running, published, unchanged, planned, failed, refused), its progress "
                   "(stage, rows read so far, total) and, once finished, counts, diff, quality and error",
        "tags": [TAG],
        "parameters": [path_parameter("runId", "the run's id (as POST .../data answered)",
                                      {"type": "integer", "minimum": 1, "maximum": 2 ** 31 - 1})],
        "responses": {"200": _json("the run", {"type": "object", "required": ["run", "state", "layers"], "properties": {
            "run": {"type": "integer"}, "state": {"type": "string"},
            "layers": {"type": "array", "items": {"type": "string"}},
            "progress": {"type": "object", "properties": {
                "stage": {"type": "string", "nullable": True}, "read": {"type": "integer", "nullable": True},
                "total": {"type": "integer", "nullable": True}, "stages": {"type": "object"}}},
            "counts": {"type": "object", "nullable": True}}}),
                      "403": {"$ref": _REF("Forbidden")}, "404": {"$ref": _REF("NotFound")}}}},
    "/manage/layers/{layerId}/publish": {"post": _op(
        "make a draft live (a public layer an editor publishes awaits the GIS office's review)", STATE, LAYER_PATH)},
    "/manage/layers/{layerId}/rollback": {"post": _op(
        "make a kept earlier version of the layer's data live again", _json("the versions switched and the diff"),
        LAYER_PATH, query_parameter("to", "the version to make live (default: the previous one)",
                                  {"type": "integer", "minimum": 1, "maximum": 2 ** 31 - 1}))},
    "/manage/layers/{layerId}/review": {"post": _op(
        "the GIS office's review of an editor's public layer: approve makes it live for its declared access; reject "
        "keeps it served to its own agency only, with the comment", STATE, LAYER_PATH,
        more={"422": _problem("the body is not a decision: the key paths, what is wrong and the fix"),
              "413": {"$ref": _REF("PayloadTooLarge")}},
        body={"required": True, "description": "the decision (a rejection says why in its comment)",
              "content": {"application/json": {"schema": {
                  "type": "object", "required": ["decision"], "additionalProperties": False, "properties": {
                      "decision": {"type": "string", "enum": ["approve", "reject"]},
                      "comment": {"type": "string", "maxLength": 4000}}}}}})},
    "/manage/audit": {"get": {
        "summary": "the audit trail, newest first: who, when, which layer, what, before and after (GIS office admins: "
                   "all of it; editors: the records on their agency's layers)", "tags": [TAG],
        "parameters": [
            query_parameter("layer", "only records on this layer", {"type": "string", "pattern": LAYER_ID}),
            query_parameter("actor", "only records by this principal (as recorded: name@agency) or agency",
                            {"type": "string", "minLength": 1, "maxLength": 200}),
            query_parameter("since", "only records from then on: an ISO date or time, or 7d, 12h back from now",
                            {"type": "string"}),
            query_parameter("limit", "records at most (default 100)", {"type": "integer", "minimum": 1, "maximum": 1000})],
        "responses": {"200": AUDIT, "400": {"$ref": _REF("InvalidParameter")}, "403": {"$ref": _REF("Forbidden")}}}},
}
