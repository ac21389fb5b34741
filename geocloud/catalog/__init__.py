"""The layer catalog: the single source of truth for every published layer.

Two origins, one catalog: the core layers of ``layers/*.yml`` and the agency layers registered in
PostGIS (``registry``), validated alike and merged by ``get_catalog``."""

from functools import lru_cache

from geocloud.catalog import registry
from geocloud.catalog.load import Catalog, Registration, load_catalog
from geocloud.catalog.models import Agency, I18n, Layer, LayerField
from geocloud.config import get_settings

__all__ = ["Agency", "Catalog", "I18n", "Layer", "LayerField", "Registration", "core_catalog", "get_catalog",
           "load_catalog"]


@lru_cache
def core_catalog() -> Catalog:
    """The core layers of the configured project folder, read once per process."""
    settings = get_settings()
    return load_catalog(settings.layers_dir, settings.agencies_file)


def get_catalog() -> Catalog:
    """Every layer: the core ones and the registered agency layers, as of the registry version this
    process follows (see ``registry.merged``)."""
    return registry.merged(core_catalog())


def _cache_clear() -> None:
    """Read the project folder and the registry again (tests and commands that change them)."""
    core_catalog.cache_clear()
    registry.forget()


get_catalog.cache_clear = _cache_clear
