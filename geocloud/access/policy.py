"""The one function that decides who may read a layer; every surface asks it.

- public: everyone;
- internal: any authenticated principal of a city agency (agencies.yml ``city_agency``);
- restricted: principals of the agencies (and roles) the layer's catalog entry grants.
A key or token scoped to some layers reaches only those, whatever its agency may read.
"""

from geocloud.access.principal import Principal
from geocloud.catalog import Catalog, Layer


def can_read(principal: Principal, layer: Layer) -> bool:
    if principal.layers is not None and layer.id not in principal.layers:
        return False
    level = layer.access.level
    if level == "public":
        return True
    if principal.anonymous:
        return False
    if level == "internal":
        return principal.city_agency
    return any(g.agency == principal.agency and (not g.roles or principal.has_role(g.roles))
               for g in layer.access.grants)


def visible(principal: Principal, catalog: Catalog) -> frozenset[str]:
    """Ids of the catalog layers ``principal`` may read."""
    return frozenset(layer.id for layer in catalog.layers.values() if can_read(principal, layer))
