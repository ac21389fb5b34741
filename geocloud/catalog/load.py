"""Load and cross-check the catalog: ``agencies.yml`` and one ``layers/<id>.yml`` per layer."""

from dataclasses import dataclass
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from geocloud.catalog.models import Agency, Layer
from geocloud.errors import ConfigError, NotFound
from geocloud.yamlfile import explain, load_model, read_yaml


@dataclass(frozen=True)
class Catalog:
    layers: dict[str, Layer]
    agencies: dict[str, Agency]

    def layer(self, layer_id: str) -> Layer:
        try:
            return self.layers[layer_id]
        except KeyError:
            raise NotFound(
                f"unknown layer {layer_id!r}", fix=f"use one of: {', '.join(sorted(self.layers))}"
            ) from None

    def vector_layers(self) -> list[Layer]:
        return [layer for layer in self.layers.values() if layer.kind == "vector"]


def load_agencies(path: Path) -> dict[str, Agency]:
    data = read_yaml(path) if path.exists() else {"agencies": []}
    items = (data or {}).get("agencies") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ConfigError("expected a top-level key 'agencies' holding a list", where=str(path))
    try:
        agencies = TypeAdapter(list[Agency]).validate_python(items)
    except ValidationError as exc:
        raise explain(exc, Agency, str(path)) from None
    seen: dict[str, Agency] = {}
    for agency in agencies:
        if agency.code in seen:
            raise ConfigError(f"duplicate agency code {agency.code!r}", where=str(path))
        seen[agency.code] = agency
    return seen


def load_catalog(layers_dir: Path, agencies_file: Path) -> Catalog:
    if not layers_dir.is_dir():
        raise ConfigError("layer catalog folder not found", where=str(layers_dir),
                          fix="set GEOCLOUD_PROJECT_DIR to the folder holding layers/ and etl/")
    agencies = load_agencies(agencies_file)
    layers: dict[str, Layer] = {}
    files: dict[str, Path] = {}
    for path in sorted(layers_dir.glob("*.yml")):
        layer = load_model(path, Layer)
        if layer.id != path.stem:
            raise ConfigError(f"layer id {layer.id!r} differs from the file name",
                              where=f"{path}: key 'id'", fix=f"name the file {layer.id}.yml or set id: {path.stem}")
        if layer.id in layers:
            raise ConfigError(f"duplicate layer id {layer.id!r} (also in {files[layer.id]})", where=str(path))
        for i, grant in enumerate(layer.access.grants):
            if grant.agency not in agencies:
                raise ConfigError(
                    f"grant to unknown agency {grant.agency!r}",
                    where=f"{path}: key 'access.grants[{i}].agency'",
                    fix=f"add it to {agencies_file.name} or use one of: {', '.join(sorted(agencies))}",
                )
        layers[layer.id], files[layer.id] = layer, path
    if not layers:
        raise ConfigError("no layer files (*.yml) found", where=str(layers_dir))
    return Catalog(layers=layers, agencies=agencies)
