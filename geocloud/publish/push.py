"""Pushing layers to TGOS and data.gov.tw: the safe procedure around the two clients.

For each layer: refuse what is not public; (data.gov.tw) grade the live distributions and refuse
below gold unless forced; build the record or payload from the catalog and the live data; skip it
when exactly this was pushed already; push; record the push only once the target confirmed it.
A failure is recorded as a failed attempt, with the target's words, and changes nothing else.
"""

from dataclasses import dataclass, field

import psycopg

from geocloud import db
from geocloud.catalog import Catalog, Layer, get_catalog
from geocloud.config import get_settings, operator
from geocloud.errors import ConfigError, GeocloudError, NotFound, Refused
from geocloud.etl.pipeline import load_pipeline
from geocloud.publish import checks, datagov, metadata, records, tgos
from geocloud.publish.facts import Facts, gather


@dataclass
class Outcome:
    layer: str
    target: str
    action: str                    # create, update, insert, unchanged, planned, refused, failed
    version: int | None = None
    message: str = ""
    detail: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.action not in ("refused", "failed")


def _publisher(catalog: Catalog):
    if catalog.publisher is None:
        raise ConfigError("no publisher is configured", where="agencies.yml",
                          fix="add a 'publisher' block (name, org_code, oid, contact, address, website)")
    return catalog.publisher


def record_of(conn: psycopg.Connection, layer: Layer, base_url: str) -> tuple[Facts, bytes]:
    """The TWSMP record of a live layer, with the facts it was made from."""
    catalog = get_catalog()
    facts = gather(conn, layer)
    description = None
    if facts.runs:
        try:
            description = load_pipeline(facts.runs[0].pipeline, get_settings().etl_dir, catalog).description
        except GeocloudError:
            description = None  # the pipeline file was renamed since: the runs still tell the lineage
    return facts, metadata.dataset_record(facts, _publisher(catalog), base_url, description)


def _targets(layer_ids: list[str] | None, everything: bool, attr: str) -> list[Layer]:
    catalog = get_catalog()
    if everything:
        return [layer for layer in catalog.layers.values() if layer.is_public and getattr(layer.publishing, attr)]
    if not layer_ids:
        raise NotFound("name a layer or use --all")
    return [catalog.layer(i) for i in layer_ids]


def _failure(exc: GeocloudError) -> str:
    """Refused: our side says no (not public, below gold, not configured). Failed: the target did."""
    return "refused" if isinstance(exc, (Refused, ConfigError, NotFound)) else "failed"


def _attempt(conn, outcome: Outcome, identifier: str) -> Outcome:
    records.attempt(conn, outcome.layer, outcome.target, identifier, outcome.version, outcome.action, False,
                    outcome.message, operator())
    return outcome


def push_tgos(layer_ids: list[str] | None, everything: bool = False) -> list[Outcome]:
    settings = get_settings()
    if not settings.tgos_csw_url:
        raise ConfigError("no TGOS CSW endpoint is configured", where="GEOCLOUD_TGOS_CSW_URL",
                          fix="set it to the catalogue's CSW-T URL")
    csw = tgos.Catalogue(settings.tgos_csw_url, username=settings.tgos_username, password=settings.tgos_password,
                         timeout=settings.publish_timeout, retries=settings.publish_retries,
                         backoff=settings.publish_backoff)
    out = []
    with db.connect(autocommit=True) as conn:
        for layer in _targets(layer_ids, everything, "tgos_file_identifier"):
            out.append(_push_one_tgos(conn, csw, layer, settings.public_url))
        if everything:
            out.extend(_push_services(conn, csw, settings.public_url))
    return out


def _pushable(layer: Layer, target: str, identifier: str | None, key: str, pattern: str) -> None:
    """Refuse a layer that is not public or has no identifier for the target."""
    if not layer.is_public:
        raise Refused(f"{layer.id!r} is {layer.access.level}, not public: only public layers reach {target}",
                      fix="publish it only if the catalog makes it public (layers/*.yml, access.level)")
    if not identifier:
        raise ConfigError(f"{layer.id!r} has no {target} identifier", where=f"layers/{layer.id}.yml",
                          fix=f"add publishing.{key} ({pattern})")


def _push_one_tgos(conn, csw: tgos.Catalogue, layer: Layer, base: str) -> Outcome:
    settings = get_settings()
    fid = layer.publishing.tgos_file_identifier
    outcome = Outcome(layer.id, "tgos", "refused")
    try:
        _pushable(layer, "TGOS", fid, "tgos_file_identifier", "TW-07-<agency code>-<6 digits>")
        facts, record = record_of(conn, layer, base)
        outcome.version = facts.version
        digest = records.digest(record)
        before = records.pushed(conn, layer.id, "tgos")
        if before and before.version == facts.version and before.payload_sha256 == digest:
            return Outcome(layer.id, "tgos", "unchanged", facts.version, "already pushed")
        if layer.kind == "vector":
            target = settings.data_path / "publish" / "tgos" / f"{layer.id}-v{facts.version}.zip"
            outcome.detail["bundle"] = str(tgos.bundle(f"{base}/collections/{layer.id}/download?f=shp", record,
                                                       target, layer.id, timeout=settings.publish_timeout))
        action = csw.push(fid, record)
        records.record_success(conn, layer.id, "tgos", fid, facts.version, digest, operator(), action, None)
        return Outcome(layer.id, "tgos", action, facts.version, fid, outcome.detail)
    except GeocloudError as exc:
        outcome.action, outcome.message = _failure(exc), str(exc)
        return _attempt(conn, outcome, fid or layer.id)


def service_record_of(conn: psycopg.Connection, service: str, base_url: str) -> tuple[str, bytes] | None:
    """The file identifier and ISO 19119 record of a service, coupled to the public layers it serves
    (None when none is live)."""
    catalog = get_catalog()
    publisher = _publisher(catalog)
    kind = metadata.SERVICES[service][3]
    live = dict(conn.execute("SELECT layer, published_at FROM geocloud.layer_versions WHERE state = 'live'").fetchall())
    layers = [layer for layer in catalog.layers.values() if layer.is_public and layer.kind == kind and layer.id in live]
    if not layers:
        return None
    stamp = max(live[layer.id] for layer in layers)
    return (f"{publisher.org_code}-geocloud-{service}",
            metadata.service_record(service, layers, publisher, base_url, stamp, None))


def _push_services(conn, csw: tgos.Catalogue, base: str) -> list[Outcome]:
    out = []
    for service in metadata.SERVICES:
        found = service_record_of(conn, service, base)
        if found is None:
            continue
        fid, record = found
        try:
            out.append(Outcome(f"service:{service}", "tgos", csw.push(fid, record), None, fid))
        except GeocloudError as exc:
            out.append(Outcome(f"service:{service}", "tgos", "failed", None, str(exc)))
    return out


def push_datagov(layer_ids: list[str] | None, everything: bool = False, *, dry_run: bool = False,
                 force: bool = False) -> list[Outcome]:
    settings = get_settings()
    if not dry_run and not settings.datagov_api_key:
        raise ConfigError("no data.gov.tw API key is configured", where="GEOCLOUD_DATAGOV_API_KEY",
                          fix="set it to the agency's key from data.gov.tw (the caller's IP must be registered there)")
    publisher = _publisher(get_catalog())
    base = settings.public_url
    client = None if dry_run else datagov.Client(settings.datagov_url, settings.datagov_api_key,
                                                 timeout=settings.publish_timeout, retries=settings.publish_retries,
                                                 backoff=settings.publish_backoff)
    out = []
    try:
        with db.connect(autocommit=True) as conn:
            for layer in _targets(layer_ids, everything, "datagov_identifier"):
                out.append(_push_one_datagov(conn, client, layer, publisher, base, dry_run, force))
    finally:
        if client:
            client.close()
    return out


def _push_one_datagov(conn, client, layer: Layer, publisher, base: str, dry_run: bool, force: bool) -> Outcome:
    settings = get_settings()
    ident = layer.publishing.datagov_identifier
    outcome = Outcome(layer.id, "datagov", "refused")
    try:
        _pushable(layer, "data.gov.tw", ident, "datagov_identifier", "<agency code>-<6 digits>, and datagov_category")
        facts = gather(conn, layer)
        outcome.version = facts.version
        report = checks.check(layer, base, timeout=settings.publish_timeout)
        outcome.detail["quality"] = report.as_dict()
        if report.mark == "below gold" and not force:
            raise Refused(f"{layer.id!r} would fall below the gold mark: " + "; ".join(report.problems),
                          fix="fix the distributions, or push anyway with --force")
        data = datagov.payload(facts, publisher, base)
        digest = records.digest(datagov.canonical(data))
        before = records.pushed(conn, layer.id, "datagov")
        if dry_run:
            return Outcome(layer.id, "datagov", "planned", facts.version, "dry run: nothing sent",
                           {**outcome.detail, "payload": data, "method": "PUT" if before else "POST"})
        if before and before.version == facts.version and before.payload_sha256 == digest:
            return Outcome(layer.id, "datagov", "unchanged", facts.version, "already pushed", outcome.detail)
        answer = client.push(data, exists=before is not None)
        records.record_success(conn, layer.id, "datagov", ident, facts.version, digest, operator(), answer.action,
                               report.mark)
        return Outcome(layer.id, "datagov", answer.action, facts.version, ident, {**outcome.detail, "answer": answer.result})
    except GeocloudError as exc:
        outcome.action, outcome.message = _failure(exc), str(exc)
        return _attempt(conn, outcome, ident or layer.id) if not dry_run else outcome


def pending() -> list[Outcome]:
    """Push every public layer whose live version differs from what its targets last received."""
    settings = get_settings()
    catalog = get_catalog()
    with db.connect() as conn:
        live = dict(conn.execute("SELECT layer, version FROM geocloud.layer_versions WHERE state = 'live'").fetchall())
        done = {(r["layer"], r["target"]): r["pushed_version"] for r in records.status(conn)}
    stale = {"tgos": [], "datagov": []}
    for layer in catalog.layers.values():
        if not layer.is_public or layer.id not in live:
            continue
        for target, ident in (("tgos", layer.publishing.tgos_file_identifier),
                              ("datagov", layer.publishing.datagov_identifier)):
            if ident and done.get((layer.id, target)) != live[layer.id]:
                stale[target].append(layer.id)
    out = []
    if stale["tgos"] and settings.tgos_csw_url:
        out += push_tgos(stale["tgos"])
    if stale["datagov"] and settings.datagov_api_key:
        out += push_datagov(stale["datagov"])
    for target, setting in (("tgos", settings.tgos_csw_url), ("datagov", settings.datagov_api_key)):
        if stale[target] and not setting:
            out += [Outcome(i, target, "failed", live[i], "target not configured") for i in stale[target]]
    return out
