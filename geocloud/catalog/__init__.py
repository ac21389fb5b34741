"""The layer catalog: the single source of truth for every published layer."""

from functools import lru_cache

from geocloud.catalog.load import Catalog, load_catalog
from geocloud.catalog.models import Agency, I18n, Layer, LayerField
from geocloud.config import get_settings

__all__ = ["Agency", "Catalog", "I18n", "Layer", "LayerField", "get_catalog", "load_catalog"]


@lru_cache
def get_catalog() -> Catalog:
    """The catalog of the configured project folder, read once per process."""
    settings = get_settings()
    return load_catalog(settings.layers_dir, settings.agencies_file)
