"""A DCAT-AP catalogue (JSON-LD) of the public layers, for portals that harvest.

Each layer is a ``dcat:Dataset`` with one ``dcat:Distribution`` per download format and the OGC
API / WMTS as ``dcat:DataService`` access points, all at the server's stable URLs.
"""

from datetime import datetime

from geocloud.catalog import Layer
from geocloud.catalog.models import Publisher
from geocloud.publish.distributions import distributions

CONTEXT = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "vcard": "http://www.w3.org/2006/vcard/ns#",
    "locn": "http://www.w3.org/ns/locn#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "dct:modified": {"@type": "xsd:dateTime"},
}
EU_FREQUENCY = "http://publications.europa.eu/resource/authority/frequency/"
EU_FREQ = {"daily": "DAILY", "weekly": "WEEKLY", "monthly": "MONTHLY", "quarterly": "QUARTERLY", "yearly": "ANNUAL",
           "irregular": "IRREG"}
IANA = "http://www.iana.org/assignments/media-types/"


def _text(value: str, lang: str) -> dict:
    return {"@value": value, "@language": lang}


def dataset(layer: Layer, live_version: int, published_at: datetime,
            extent: tuple[float, float, float, float] | None, base: str) -> dict:
    base = base.rstrip("/")
    uri = f"{base}/collections/{layer.id}"  # rasters are collections too (OGC API - Coverages, Tiles)
    items = distributions(layer, base)
    out = {
        "@id": uri,
        "@type": "dcat:Dataset",
        "dct:identifier": layer.publishing.datagov_identifier or layer.publishing.tgos_file_identifier or layer.id,
        "dct:title": [_text(layer.title.zh_TW, "zh-TW"), _text(layer.title.en, "en")],
        "dct:description": [_text(layer.description.zh_TW, "zh-TW"), _text(layer.description.en, "en")],
        "dcat:keyword": layer.keywords,
        "dct:modified": published_at.isoformat(),
        "owl:versionInfo": f"v{live_version}",
        "dct:accrualPeriodicity": {"@id": EU_FREQUENCY + EU_FREQ[layer.update_frequency]},
        "dct:accessRights": {"@id": "http://publications.europa.eu/resource/authority/access-right/PUBLIC"},
        "dct:license": {"@id": layer.license_url},
        "dcat:contactPoint": {"@type": "vcard:Organization", "vcard:fn": layer.contact.organization.zh_TW,
                              "vcard:hasEmail": {"@id": f"mailto:{layer.contact.email}"}},
        "dcat:landingPage": {"@id": f"{base}/map/"},
        "foaf:page": {"@id": f"{base}/metadata/{layer.id}.xml"},
        "dcat:distribution": [{
            "@id": f"{uri}#{d.key}",
            "@type": "dcat:Distribution",
            "dct:title": [_text(d.title, "zh-TW"), _text(d.title_en, "en")],
            "dct:format": d.format,
            "dcat:mediaType": {"@id": IANA + d.media_type},
            "dcat:accessURL": {"@id": d.url},
            **({"dcat:downloadURL": {"@id": d.url}} if d.download else
               {"dcat:accessService": {"@type": "dcat:DataService", "dcat:endpointURL": {"@id": d.url}}}),
            "dct:license": {"@id": layer.license_url},
            "dct:modified": published_at.isoformat(),
        } for d in items],
    }
    if extent:
        w, s, e, n = extent
        out["dct:spatial"] = {"@type": "dct:Location", "dcat:bbox": {
            "@value": f"POLYGON(({w} {s},{e} {s},{e} {n},{w} {n},{w} {s}))",
            "@type": "http://www.opengis.net/ont/geosparql#wktLiteral"}}
    return out


def catalog(datasets: list[dict], publisher: Publisher, base: str) -> dict:
    base = base.rstrip("/")
    return {
        "@context": {**CONTEXT, "owl": "http://www.w3.org/2002/07/owl#"},
        "@id": f"{base}/catalog/dcat.jsonld",
        "@type": "dcat:Catalog",
        "dct:title": [_text(f"{publisher.name.zh_TW}圖資雲", "zh-TW"), _text(f"{publisher.name.en} geodata", "en")],
        "dct:description": [_text(f"{publisher.name.zh_TW}公開圖資目錄", "zh-TW"),
                            _text(f"Open geodata of the {publisher.name.en}", "en")],
        "dct:publisher": {"@type": "foaf:Organization", "foaf:name": publisher.name.zh_TW,
                          "foaf:homepage": {"@id": publisher.website}},
        "dct:language": {"@id": "http://publications.europa.eu/resource/authority/language/ZHO"},
        "foaf:homepage": {"@id": f"{base}/"},
        "dcat:dataset": datasets,
    }
