"""Load and cross-check the catalog: ``agencies.yml`` and one ``layers/<id>.yml`` per layer."""

from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from geocloud.catalog.models import Agency, Layer, Publisher
from geocloud.errors import ConfigError, NotFound
from geocloud.yamlfile import explain, load_model, read_yaml


@dataclass(frozen=True)
class Registration:
    """An agency layer of the registry (geocloud.registered_layers): its entry, owner and state."""

    layer: Layer
    owner: str
    state: str              # draft | live | pending_review | rejected | retired
    updated_by: str
    updated_at: datetime
    review: dict | None = None  # the GIS office's last decision: decision, comment, by, at


@dataclass(frozen=True)
class Catalog:
    """Every served layer, core (layers/*.yml) and agency (the registry) alike, by id.

    ``layers`` holds what the surfaces serve: the core layers and the agency layers that are live or
    pending review. ``registered`` holds every agency layer in any state (drafts and retired ones too).
    The GIS office (agencies.yml ``gis_office``) owns the core layers."""

    layers: dict[str, Layer]
    agencies: dict[str, Agency]
    publisher: Publisher | None = None
    gis_office: str | None = None
    registered: dict[str, Registration] = field(default_factory=dict)

    def origin(self, layer_id: str) -> str:
        return "agency" if layer_id in self.registered else "core"

    def owner(self, layer_id: str) -> str | None:
        entry = self.registered.get(layer_id)
        return entry.owner if entry else self.gis_office

    def loadable(self) -> "Catalog":
        """The catalog the ETL loads into: also the drafts, whose data comes before they go live."""
        drafts = {i: r.layer for i, r in self.registered.items() if r.state == "draft"}
        return replace(self, layers={**self.layers, **drafts}) if drafts else self

    def layer(self, layer_id: str) -> Layer:
        try:
            return self.layers[layer_id]
        except KeyError:
            raise NotFound(
                f"unknown layer {layer_id!r}", fix=f"use one of: {', '.join(sorted(self.layers))}"
            ) from None

    def vector_layers(self) -> list[Layer]:
        return [layer for layer in self.layers.values() if layer.kind == "vector"]


def load_publisher(path: Path) -> Publisher | None:
    """The ``publisher`` block of ``agencies.yml`` (None when absent: nothing can be published)."""
    data = read_yaml(path) if path.exists() else {}
    if not isinstance(data, dict) or data.get("publisher") is None:
        return None
    try:
        return Publisher.model_validate(data["publisher"])
    except ValidationError as exc:
        raise explain(exc, Publisher, f"{path}: key 'publisher'") from None


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


def load_gis_office(path: Path, agencies: dict[str, Agency]) -> str | None:
    """The agency code of the GIS office (``gis_office`` in agencies.yml): it owns the core layers
    and its principals administer every layer. None when absent: no one administers."""
    data = read_yaml(path) if path.exists() else {}
    code = data.get("gis_office") if isinstance(data, dict) else None
    if code is not None and code not in agencies:
        raise ConfigError(f"gis_office {code!r} is not one of the agencies", where=f"{path}: key 'gis_office'",
                          fix=f"use one of: {', '.join(sorted(agencies))}")
    return code


def check_layer(layer: Layer, where: str, agencies: dict[str, Agency], publisher: Publisher | None,
                agencies_file: Path) -> None:
    """The checks a layer needs beyond its model: grants name known agencies, portal ids fit, a source
    mapping maps the layer's own fields."""
    _check_source(layer, where)
    for i, grant in enumerate(layer.access.grants):
        if grant.agency not in agencies:
            raise ConfigError(
                f"grant to unknown agency {grant.agency!r}",
                where=f"{where}: key 'access.grants[{i}].agency'",
                fix=f"add it to {agencies_file.name} or use one of: {', '.join(sorted(agencies))}",
            )
    _check_publishing(layer, where, publisher, agencies_file)


def _check_source(layer: Layer, where: str) -> None:
    if layer.source is None:
        return
    if layer.kind == "raster" and layer.source.model_dump(exclude_none=True, exclude_defaults=True).keys() - {"crs"}:
        raise ConfigError("a raster layer's source takes only 'crs'", where=f"{where}: key 'source'",
                          fix="remove fields, x, y and encoding")
    names = [f.name for f in layer.fields]
    for target in layer.source.fields:
        if target not in names:
            raise ConfigError(f"{target!r} is not one of the layer's fields", where=f"{where}: key 'source.fields.{target}'",
                              fix=f"map one of: {', '.join(names)}")


def _check_publishing(layer: Layer, path: str, publisher: Publisher | None, agencies_file: Path) -> None:
    """Portal identifiers must carry the publisher's agency code, or the portals refuse them."""
    ids = layer.publishing
    if not (ids.tgos_file_identifier or ids.datagov_identifier):
        return
    if publisher is None:
        raise ConfigError("the layer has portal identifiers but there is no publisher",
                          where=f"{path}: key 'publishing'", fix=f"add a 'publisher' block to {agencies_file.name}")
    for key, value in (("tgos_file_identifier", ids.tgos_file_identifier), ("datagov_identifier", ids.datagov_identifier)):
        if value and publisher.org_code not in value:
            raise ConfigError(f"{value!r} does not carry the publisher's agency code {publisher.org_code!r}",
                              where=f"{path}: key 'publishing.{key}'", fix="use the code from agencies.yml's publisher")
    if ids.datagov_identifier and not ids.datagov_category:
        raise ConfigError("a data.gov.tw dataset needs its category", where=f"{path}: key 'publishing.datagov_category'",
                          fix="add datagov_category, e.g. 國土及地理")


def load_catalog(layers_dir: Path, agencies_file: Path) -> Catalog:
    if not layers_dir.is_dir():
        raise ConfigError("layer catalog folder not found", where=str(layers_dir),
                          fix="set GEOCLOUD_PROJECT_DIR to the folder holding layers/ and etl/")
    agencies = load_agencies(agencies_file)
    publisher = load_publisher(agencies_file)
    layers: dict[str, Layer] = {}
    files: dict[str, Path] = {}
    for path in sorted(layers_dir.glob("*.yml")):
        layer = load_model(path, Layer)
        if layer.id != path.stem:
            raise ConfigError(f"layer id {layer.id!r} differs from the file name",
                              where=f"{path}: key 'id'", fix=f"name the file {layer.id}.yml or set id: {path.stem}")
        if layer.id in layers:
            raise ConfigError(f"duplicate layer id {layer.id!r} (also in {files[layer.id]})", where=str(path))
        check_layer(layer, str(path), agencies, publisher, agencies_file)
        if layer.source is not None:
            raise ConfigError("a core layer's source is mapped in its etl/*.yml pipeline", where=f"{path}: key 'source'",
                              fix="move the mapping to the pipeline's source and outputs[].fields")
        layers[layer.id], files[layer.id] = layer, path
    if not layers:
        raise ConfigError("no layer files (*.yml) found", where=str(layers_dir))
    return Catalog(layers=layers, agencies=agencies, publisher=publisher,
                   gis_office=load_gis_office(agencies_file, agencies))
