"""Who may read a layer (``can_read``; every surface asks it) and who may manage one (``can_manage``).

- public: everyone;
- internal: any authenticated principal of a city agency (agencies.yml ``city_agency``), and those
  its grants name (approved access requests: an outside agency);
- restricted: principals of the agencies (and roles) the layer's grants name: its catalog entry's
  and those approved access requests made (``catalog.grants`` folds them in);
each grant until its ``expires``, if it has one.
A key or token scoped to some layers reaches only those, whatever its agency may read.

Expiry is evaluated at each request against the clock, not when the catalog is read: a grant
stops working on every surface at the moment it expires, on every worker, with no restart.
"""

from datetime import datetime, timezone

from geocloud.access.principal import Principal
from geocloud.catalog import Catalog, Layer
from geocloud.catalog.registry import REVIEWER_ROLES


def can_read(principal: Principal, layer: Layer) -> bool:
    if principal.layers is not None and layer.id not in principal.layers:
        return False
    level = layer.access.level
    if level == "public":
        return True
    if principal.anonymous:
        return False
    if level == "internal" and principal.city_agency:
        return True
    now = datetime.now(timezone.utc)
    return any(g.agency == principal.agency and (not g.roles or principal.has_role(g.roles))
               and (g.expires is None or g.expires > now) for g in layer.access.grants)


def visible(principal: Principal, catalog: Catalog) -> frozenset[str]:
    """Ids of the catalog layers ``principal`` may read."""
    return frozenset(layer.id for layer in catalog.layers.values() if can_read(principal, layer))


MANAGE_ACTIONS = ("edit", "load", "publish", "retire", "review")
ADMIN_ROLES = REVIEWER_ROLES  # of the GIS office's agency: manage every agency layer, review public ones
EDITOR_ROLES = ("editor",)  # an agency's data stewards: manage the layers their agency owns


def can_manage(principal: Principal, action: str, layer_id: str, catalog: Catalog, owner: str | None = None) -> bool:
    """May ``principal`` do ``action`` (one of MANAGE_ACTIONS) to the layer ``layer_id``?

    ``owner`` names the agency of a layer being registered (an existing layer's owner is the
    catalog's). Core layers (layers/*.yml) are changed in the repository: over the management
    routes only an admin may load their data. Review is the admins' alone; a key or token scoped to
    some layers manages at most those."""
    if action not in MANAGE_ACTIONS:
        raise ValueError(f"unknown management action {action!r}")
    if principal.anonymous or principal.agency is None:
        return False
    if principal.layers is not None and layer_id not in principal.layers:
        return False
    admin = is_admin(principal, catalog)
    if catalog.origin(layer_id) == "core" and layer_id in catalog.layers:
        return admin and action == "load"
    if admin:
        return True
    owner = catalog.owner(layer_id) if layer_id in catalog.registered else owner
    return action != "review" and owner == principal.agency and principal.has_role(EDITOR_ROLES)


def is_admin(principal: Principal, catalog: Catalog) -> bool:
    """A GIS office admin: manages every agency layer, reviews public ones, decides every request."""
    return principal.agency == catalog.gis_office and principal.has_role(ADMIN_ROLES)


def can_decide(principal: Principal, layer_id: str, catalog: Catalog) -> bool:
    """May ``principal`` approve or reject requests for access to ``layer_id``? The GIS office's
    admins for every layer; the owning agency's editors (the GIS office's, for core layers)."""
    if principal.anonymous or principal.agency is None or layer_id not in catalog.layers:
        return False
    if principal.layers is not None and layer_id not in principal.layers:
        return False
    if is_admin(principal, catalog):
        return True
    return catalog.owner(layer_id) == principal.agency and principal.has_role(EDITOR_ROLES)
