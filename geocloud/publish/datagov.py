"""data.gov.tw's agency API: the dataset payload derived from the catalog, and the client that pushes it.

``POST /api/v1/rest/dataset`` creates, ``PUT /api/v1/rest/dataset/{identifier}`` updates, with the
agency's key in the ``Authorization`` header. Answers are ``{"success": true, "result": {...}}`` or
``{"success": false, "error": {...}}``. Transient failures (no answer, timeouts, 5xx, 429) are
retried with exponential backoff; a 4xx is the portal refusing what was sent and is reported with
the portal's own words. The push is idempotent: a payload already pushed is not sent again, a
create that finds the dataset already there becomes an update, and an update of a dataset the
portal no longer has becomes a create.
"""

import json
from dataclasses import dataclass

import httpx

from geocloud.catalog.models import Publisher
from geocloud.errors import PortalError
from geocloud.publish.distributions import distributions, field_description
from geocloud.publish.facts import Facts
from geocloud.publish.retry import Transient, retrying

PATH = "/api/v1/rest/dataset"
PERIODICITY = {"daily": "每日", "weekly": "每週", "monthly": "每月", "quarterly": "每季", "yearly": "每年",
               "irregular": "不定期"}
TRANSIENT = {429, 500, 502, 503, 504}


def payload(facts: Facts, publisher: Publisher, base_url: str) -> dict:
    """The dataset as data.gov.tw's API wants it; every required field comes from the catalog or the data."""
    layer = facts.layer
    identifier = layer.publishing.datagov_identifier
    modified = facts.revised.isoformat(timespec="seconds")
    west, south, east, north = facts.extent
    return {
        "identifier": identifier,
        "categoryCode": layer.publishing.datagov_category,
        "title": layer.title.zh_TW,
        "description": layer.description.zh_TW,
        "fieldDescription": field_description(layer),
        "type": "rawData",
        "publisher": publisher.name.zh_TW,
        "accrualPeriodicity": PERIODICITY[layer.update_frequency],
        "license": layer.license,
        "licenseURL": layer.license_url,
        "cost": "免費",
        "keyword": list(dict.fromkeys([layer.title.zh_TW, *layer.keywords])),
        "organization": layer.contact.organization.zh_TW,
        "organizationContactName": layer.contact.name,
        "organizationContactPhone": layer.contact.phone,
        "organizationContactEmail": layer.contact.email,
        "publisherContactName": publisher.contact.name,
        "publisherContactPhone": publisher.contact.phone,
        "publisherContactEmail": publisher.contact.email,
        "publisherOID": publisher.oid,
        "issued": facts.created.isoformat(timespec="seconds"),
        "modified": modified,
        "spatial": f"{west:.6f},{south:.6f},{east:.6f},{north:.6f}",
        "landingPage": f"{base_url.rstrip('/')}/collections/{layer.id}",
        "notes": f"提供機關／{layer.contact.organization.zh_TW} {facts.revised.year} {layer.title.zh_TW}；"
                 f"授權：{layer.license} {layer.license_url}",
        "distribution": [
            {"resourceID": f"{identifier}-{i:03d}", "resourceDescription": f"{layer.title.zh_TW} {d.title}",
             "format": d.format, "characterSetCode": "UTF-8", "downloadURL": d.url, "resourceModified": modified}
            for i, d in enumerate(distributions(layer, base_url), start=1)
        ],
    }


def canonical(data: dict) -> bytes:
    return json.dumps(data, ensure_ascii=False, sort_keys=True).encode()


@dataclass(frozen=True)
class Answer:
    action: str          # "create" or "update"
    result: dict


class Client:
    def __init__(self, base_url: str, api_key: str, *, timeout: float, retries: int, backoff: float):
        self.base, self.retries, self.backoff = base_url.rstrip("/"), retries, backoff
        self.http = httpx.Client(timeout=timeout, headers={"Authorization": api_key})

    def close(self) -> None:
        self.http.close()

    def _send(self, method: str, path: str, body: dict | None) -> httpx.Response:
        """One request, retried while the failure is transient; the last failure is raised."""
        def attempt() -> httpx.Response:
            try:
                response = self.http.request(method, self.base + path, json=body)
            except httpx.TimeoutException:
                raise Transient(f"no answer within {self.http.timeout.read} s") from None
            except httpx.TransportError as exc:
                raise Transient(f"unreachable ({exc.__class__.__name__}: {exc})") from None
            if response.status_code in TRANSIENT:
                hint = response.headers.get("retry-after", "")
                raise Transient(f"HTTP {response.status_code}: {_portal_words(response)}",
                                float(hint) if hint.isdigit() else None)
            return response
        return retrying(attempt, f"data.gov.tw {method} {path}", self.retries, self.backoff)

    def push(self, data: dict, exists: bool) -> Answer:
        """Create or update; ``exists`` says whether an earlier push created it."""
        identifier = data["identifier"]
        action = "update" if exists else "create"
        for _ in range(2):  # at most one switch between create and update
            if action == "update":
                response = self._send("PUT", f"{PATH}/{identifier}", data)
                if response.status_code == 404:
                    action = "create"
                    continue
            else:
                response = self._send("POST", PATH, data)
                if response.status_code == 409:
                    action = "update"
                    continue
            return Answer(action, _result(response, action, identifier))
        return Answer(action, _result(response, action, identifier))


def _portal_words(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    return json.dumps(error if error is not None else body, ensure_ascii=False)[:500]


def _result(response: httpx.Response, action: str, identifier: str) -> dict:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success and isinstance(body, dict) and body.get("success") is True:
        return body.get("result") or {}
    raise PortalError(f"data.gov.tw refused to {action} {identifier}: HTTP {response.status_code}: "
                      f"{_portal_words(response)}",
                      fix="correct what the portal names (catalog: layers/*.yml, agencies.yml) and push again; "
                          "nothing was recorded as pushed")
