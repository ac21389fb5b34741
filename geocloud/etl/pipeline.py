"""ETL pipeline definitions: one ``etl/<name>.yml`` per pipeline.

A pipeline says how to read one kind of source (format, encoding, CRS, CSV coordinate columns),
how its fields map onto the catalog layer's fields, which named transform enriches them, how a
multi-layer source splits by feature code, and which validation rules apply.
"""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from geocloud.catalog import Catalog
from geocloud.catalog.models import Layer, SourceMapping
from geocloud.errors import ConfigError, InputError, NotFound
from geocloud.yamlfile import load_model

SourceFormat = Literal["shapefile", "geopackage", "geojson", "csv", "kml", "geotiff"]
SUFFIXES = {"shapefile": {".shp", ".zip"}, "geopackage": {".gpkg"}, "geojson": {".geojson", ".json"},
            "csv": {".csv", ".txt"}, "kml": {".kml"}}  # of each vector format's files


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(Strict):
    format: SourceFormat
    encoding: Literal["auto", "utf-8", "cp950"] = "auto"
    crs: str | None = Field(default=None, description="CRS when the source declares none, e.g. EPSG:3826")
    layers: list[str] | None = Field(default=None, description="layers of a multi-layer source to read")
    x: list[str] | None = Field(default=None, description="CSV: accepted names of the X (easting) column")
    y: list[str] | None = Field(default=None, description="CSV: accepted names of the Y (northing) column")

    @model_validator(mode="after")
    def _csv_needs_xy(self):
        if self.format == "csv" and not (self.x and self.y):
            raise ValueError("a CSV source needs 'x' and 'y': the accepted names of its coordinate columns")
        return self


class Split(Strict):
    """Route each feature to an output layer by a code field (1/1000 topographic feature codes)."""

    field: str
    codes: dict[str, str] = Field(description="feature code -> output layer id")


class Output(Strict):
    layer: str
    fields: dict[str, str | list[str]] = Field(
        description="catalog field -> source field (or a list of accepted source names)")
    transform: Literal["addresses", "zoning"] | None = None


class Rules(Strict):
    extent: Literal["city", "taiwan"] = "city"
    on_invalid_geometry: Literal["repair", "reject"] = "repair"
    on_duplicate_key: Literal["reject", "keep-first"] = "reject"
    max_rejected_rows: int = Field(default=0, ge=0, description="more rejected rows than this fail the run")
    max_removed_percent: float | None = Field(
        default=None, ge=0, description="the guard stops a run removing more than this % of the live features "
                                        "(default: GEOCLOUD_ETL_MAX_REMOVED_PERCENT, 20)")
    max_extent_change_percent: float | None = Field(
        default=None, ge=0, description="the guard stops a run moving an edge of the extent by more than this % of "
                                        "the live width or height (default: GEOCLOUD_ETL_MAX_EXTENT_CHANGE_PERCENT, 25)")


class Pipeline(Strict):
    pipeline: str
    description: str
    source: Source
    outputs: list[Output] = Field(default_factory=list)
    split: Split | None = None
    raster_layer: str | None = Field(default=None, description="raster pipelines: the catalog layer")
    mosaic: bool = Field(default=False, description="raster pipelines: merge every GeoTIFF of a folder")
    rules: Rules = Field(default_factory=Rules)
    zone_codes: str | None = Field(default=None, description="zoning: path of a full national code table")
    _named: dict[str, list[str]] = PrivateAttr(default_factory=dict)  # an agency entry's key path -> its columns

    @field_validator("pipeline")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.replace("-", "").isalnum():
            raise ValueError("a pipeline name holds only letters, digits and '-'")
        return value

    @model_validator(mode="after")
    def _shape(self):
        if self.source.format == "geotiff":
            if not self.raster_layer or self.outputs:
                raise ValueError("a GeoTIFF pipeline names 'raster_layer' and has no 'outputs'")
        elif not self.outputs:
            raise ValueError("a vector pipeline needs at least one entry in 'outputs'")
        if len(self.outputs) > 1 and self.split is None:
            raise ValueError("several outputs need 'split' to say which features go where")
        return self

    def check_columns(self, columns: list[str]) -> None:
        """Every column an agency layer's entry names (``source.fields``, ``source.x/y``) must be in
        the file: the entry says to read that column, so its absence is an error, not a gap."""
        for key, names in self._named.items():
            if not any(n in columns for n in names):
                raise InputError(f"the layer's entry, key '{key}', names column {' / '.join(map(repr, names))}, "
                                 "which the file does not have",
                                 fix=f"the file's columns are {', '.join(columns)}: correct the entry's "
                                     f"{key} (PUT /manage/layers/{self.layer_ids[0]}, or `geocloud layers add`) or the file")

    @property
    def layer_ids(self) -> list[str]:
        return [self.raster_layer] if self.raster_layer else [o.layer for o in self.outputs]

    def check_against(self, catalog: Catalog, where: str) -> None:
        """Every output layer and mapped field must exist in the catalog."""
        for i, layer_id in enumerate(self.layer_ids):
            if layer_id not in catalog.layers:
                raise ConfigError(f"layer {layer_id!r} is not in the catalog", where=where,
                                  fix=f"use one of: {', '.join(sorted(catalog.layers))}")
            layer: Layer = catalog.layers[layer_id]
            expected = "raster" if self.raster_layer else "vector"
            if layer.kind != expected:
                raise ConfigError(f"layer {layer_id!r} is a {layer.kind} layer, not {expected}", where=where)
        for i, output in enumerate(self.outputs):
            layer = catalog.layers[output.layer]
            names = {f.name for f in layer.fields}
            for target in output.fields:
                if target not in names:
                    raise ConfigError(f"outputs[{i}].fields: {target!r} is not a field of layer {layer.id!r}",
                                      where=where, fix=f"use one of: {', '.join(sorted(names))}")
        if self.split:
            for code, layer_id in self.split.codes.items():
                if layer_id not in {o.layer for o in self.outputs}:
                    raise ConfigError(f"split.codes[{code}] routes to {layer_id!r}, which is not an output",
                                      where=where)


CSV_X = ["X", "x", "TWD97X", "twd97_x", "x_twd97", "lon", "longitude", "經度", "橫坐標", "X坐標"]
CSV_Y = ["Y", "y", "TWD97Y", "twd97_y", "y_twd97", "lat", "latitude", "緯度", "縱坐標", "Y坐標"]


def _names(columns: str | list[str] | None) -> list[str] | None:
    return [columns] if isinstance(columns, str) else columns


def agency_pipeline(layer: Layer, source: Path) -> Pipeline:
    """The pipeline of an agency layer, which has no etl/*.yml: the format from the file's suffix,
    each catalog field read from the column its entry's ``source.fields`` names, else from the column
    of its name or its zh-TW or English title; a CSV's coordinates from the entry's ``source.x/y``,
    else the usual X/Y column names, in the entry's ``source.crs``, else the layer's CRS; the default
    rules."""
    mapping, suffix = layer.source or SourceMapping(), source.suffix.lower()
    name, description = layer.id.replace("_", "-"), layer.title.en
    if layer.kind == "raster":
        if suffix not in {".tif", ".tiff"} and not source.is_dir():
            raise InputError(f"expected a GeoTIFF (.tif) for raster layer {layer.id!r}, got {suffix!r}",
                             where=str(source), fix="give the layer's GeoTIFF file")
        return Pipeline(pipeline=name, description=description, source=Source(format="geotiff", crs=mapping.crs),
                        raster_layer=layer.id)
    fmt = next((f for f, suffixes in SUFFIXES.items() if suffix in suffixes), None)
    if fmt is None:
        known = sorted(s for suffixes in SUFFIXES.values() for s in suffixes)
        raise InputError(f"cannot tell the format of a {suffix or 'suffix-less'} file", where=str(source),
                         fix=f"give a file ending in one of: {', '.join(known)}")
    fields = {f.name: mapping.fields.get(f.name) or list(dict.fromkeys([f.name, f.title.zh_TW, f.title.en]))
              for f in layer.fields}
    csv = {"x": _names(mapping.x) or CSV_X, "y": _names(mapping.y) or CSV_Y} if fmt == "csv" else {}
    crs = mapping.crs or (layer.crs if fmt == "csv" else None)
    pipeline = Pipeline(pipeline=name, description=description,
                        source=Source(format=fmt, encoding=mapping.encoding or "auto", crs=crs, **csv),
                        outputs=[Output(layer=layer.id, fields=fields)])
    pipeline._named = {key: names for key, names in mapping.columns().items()
                       if fmt == "csv" or key.startswith("source.fields.")}
    return pipeline


def load_pipeline(name: str, etl_dir: Path, catalog: Catalog, source: Path | None = None) -> Pipeline:
    """The pipeline etl/<name>.yml, or, for an agency layer named ``name``, its inferred pipeline."""
    path = etl_dir / f"{name}.yml"
    if not path.exists() and source is not None and name in catalog.registered and name in catalog.layers:
        pipeline = agency_pipeline(catalog.layers[name], source)
        pipeline.check_against(catalog, f"registered layer {name!r}")
        return pipeline
    if not path.exists():
        known = sorted(p.stem for p in etl_dir.glob("*.yml"))
        agency = sorted(i for i in catalog.registered if i in catalog.layers)
        raise NotFound(f"unknown pipeline {name!r}", fix=f"use one of: {', '.join(known + agency)}")
    pipeline = load_model(path, Pipeline)
    if pipeline.pipeline != name:
        raise ConfigError(f"pipeline name {pipeline.pipeline!r} differs from the file name", where=str(path))
    pipeline.check_against(catalog, str(path))
    return pipeline
