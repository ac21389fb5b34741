"""``POST /manage/layers/{id}/review``: the GIS office gates public layers, which are pushed to TGOS
and data.gov.tw. An editor's public layer, once published, is in review: served to its own agency
only. A GIS office admin approves it (live for the access its entry asks) or rejects it with a
comment (still served to its own agency only, until the agency changes the entry or publishes it
again, which asks for review anew). The decision, comment, who and when are kept with the layer
(``registry.review``) and shown by ``GET /manage/layers``."""

import json
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from geocloud.access.review import review as reviewed
from geocloud.db.pool import write_pool
from geocloud.errors import ConfigError
from geocloud.serve.http import HTTPError, read_body
from geocloud.serve.manage.acting import (
    fresh_catalog,
    in_thread,
    json_answer,
    operator_of,
)
from geocloud.serve.manage.permission import manager, problem
from geocloud.yamlfile import explain

BODY_MAX_BYTES = 64 * 1024  # a decision and a comment


class Decision(BaseModel):
    """The review's body."""

    model_config = ConfigDict(extra="forbid")
    decision: Literal["approve", "reject"]
    comment: str = Field(default="", max_length=4000, validate_default=True)

    @field_validator("comment")
    @classmethod
    def _reject_says_why(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("decision") == "reject" and not value.strip():
            raise ValueError("a rejection needs a comment saying what the agency should change")
        return value


async def _decision(request: Request, where: str) -> Decision:
    body = await read_body(request, BODY_MAX_BYTES, "a review's body")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise HTTPError(400, "InvalidParameterValue", f"the body is not JSON ({exc}): send "
                                                      '{"decision": "approve" or "reject", "comment": "..."}') from None
    try:
        return Decision.model_validate(data)
    except ValidationError as exc:
        error = explain(exc, Decision, where)
        raise ConfigError(error.what, where=where, fix='send {"decision": "approve" or "reject", "comment": "..."}') \
            from None


def _review(layer_id: str, decision: Decision, principal) -> JSONResponse:
    with write_pool().connection() as conn:
        after = reviewed(conn, layer_id, decision.decision, decision.comment, operator_of(principal),
                         principal.agency, "manage")
    return json_answer({"id": layer_id, "state": after["state"], "review": after["review"]})


async def post_review(request: Request):
    layer_id = request.path_params["layer_id"]
    principal = manager("review", layer_id, fresh_catalog())
    where = f"POST /manage/layers/{layer_id}/review"
    try:
        decision = await _decision(request, where)
    except ConfigError as exc:
        return problem(exc)
    return await in_thread(principal, _review, layer_id, decision, principal)


routes = [Route("/manage/layers/{layer_id}/review", post_review, methods=["POST"])]
