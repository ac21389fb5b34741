"""Grants made by approving access requests (``geocloud.layer_grants``), folded into the catalog.

They are the catalog's ``Grant`` model, added to the grants of the layer they name (restricted, or
internal: an outside agency's), so the read policy evaluates them exactly as the grants of
``layers/*.yml`` and of registered entries, expiry included. They are read with the registry
(``registry.merged``): approving a request adds a registry event, and every worker follows it
within seconds. A grant for a layer made public since, or gone, adds nothing."""

from dataclasses import replace

import psycopg

from geocloud.catalog.load import Catalog
from geocloud.catalog.models import Grant


def read(conn: psycopg.Connection) -> list[tuple[str, Grant]]:
    """(layer, grant) of every grant not yet expired; [] before the migration that adds them."""
    if conn.execute("SELECT to_regclass('geocloud.layer_grants')").fetchone()[0] is None:
        return []
    rows = conn.execute("SELECT layer, agency, roles, expires_at FROM geocloud.layer_grants "
                        "WHERE expires_at IS NULL OR expires_at > now() ORDER BY id").fetchall()
    return [(layer, Grant(agency=agency, roles=roles, expires=expires)) for layer, agency, roles, expires in rows]


def fold(catalog: Catalog, granted: list[tuple[str, Grant]]) -> Catalog:
    """``catalog`` with each grant added to its layer's grants (a public layer needs none)."""
    extra: dict[str, list[Grant]] = {}
    for layer_id, grant in granted:
        layer = catalog.layers.get(layer_id)
        if layer is not None and layer.access.level != "public":
            extra.setdefault(layer_id, []).append(grant)
    if not extra:
        return catalog
    layers = dict(catalog.layers)
    for layer_id, more in extra.items():
        access = layers[layer_id].access
        layers[layer_id] = layers[layer_id].model_copy(
            update={"access": access.model_copy(update={"grants": [*access.grants, *more]})})
    return replace(catalog, layers=layers)
