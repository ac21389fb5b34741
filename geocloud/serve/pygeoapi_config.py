"""pygeoapi's configuration, derived from the layer catalog and what is live.

``pygeoapi-config.yml`` holds only the server-level settings; every resource is generated here from
``layers/*.yml`` (titles, descriptions and keywords in zh-TW and English, extents from the live
version, CRS lists, limits), so a layer is described once.
"""

from copy import deepcopy
from functools import lru_cache

import yaml
from pygeoapi.openapi import get_oas

from geocloud.catalog import Catalog, Layer
from geocloud.config import get_settings
from geocloud.serve.state import Snapshot

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG_URI = "http://www.opengis.net/def/crs/EPSG/0/{}"
OUTPUT_CRS = [CRS84, EPSG_URI.format(4326), EPSG_URI.format(3826), EPSG_URI.format(3857)]
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
MAX_OFFSET = 100_000_000  # beyond any layer's feature count; keeps OFFSET within PostgreSQL's bigint
PROVIDER = "geocloud.serve.provider.GeocloudProvider"
TAICHUNG_CRS84 = [120.45, 23.99, 121.46, 24.45]


@lru_cache
def server_settings() -> dict:
    path = get_settings().project_dir / "pygeoapi-config.yml"
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _i18n(text) -> dict:
    return {"zh-TW": text.zh_TW, "en": text.en}


def resource(layer: Layer, snap: Snapshot) -> dict:
    live = snap.layers.get(layer.id)
    bbox = list(live.extent) if live and live.extent else TAICHUNG_CRS84
    return {
        "type": "collection",
        "title": _i18n(layer.title),
        "description": _i18n(layer.description),
        "keywords": {"zh-TW": layer.keywords, "en": layer.keywords},
        "links": [{"type": "text/html", "rel": "license", "title": layer.license, "href": layer.license_url}],
        "extents": {"spatial": {"bbox": bbox, "crs": CRS84}},
        "limits": {"default_items": DEFAULT_LIMIT, "max_items": MAX_LIMIT, "on_exceed": "error"},
        "providers": [{
            "type": "feature",
            "name": PROVIDER,
            "data": layer.id,
            "id_field": layer.key,
            "time_field": layer.time_field,
            "storage_crs": EPSG_URI.format(layer.srid),
            "crs": OUTPUT_CRS,
        }],
    }


def build(catalog: Catalog, snap: Snapshot, base_url: str, visible: frozenset[str]) -> dict:
    """The configuration for one caller's view: only the live vector layers they may read."""
    config = deepcopy(server_settings())
    config["server"]["url"] = base_url
    config["server"].pop("limit", None)
    config["server"]["limits"] = {"default_items": DEFAULT_LIMIT, "max_items": MAX_LIMIT, "on_exceed": "error"}
    config["resources"] = {layer.id: resource(layer, snap) for layer in catalog.vector_layers()
                           if layer.id in snap.layers and layer.id in visible}
    return config


def openapi(config: dict) -> dict:
    return get_oas(config, fail_on_invalid_collection=False)
