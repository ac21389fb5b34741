"""Typed models of the layer catalog (``layers/*.yml``) and the agency registry (``agencies.yml``).

Unknown keys are refused (``extra="forbid"``) so that a misspelt key is an error, not a silently
ignored setting.
"""

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from pyproj import CRS
from pyproj.exceptions import CRSError

OGDL_TW = "政府資料開放授權條款－第1版"
OGDL_TW_URL = "https://data.gov.tw/license"

FieldType = Literal["text", "integer", "bigint", "double", "boolean", "date", "timestamp"]
GeometryType = Literal["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"]
Frequency = Literal["daily", "weekly", "monthly", "quarterly", "yearly", "irregular"]

LAYER_ID = r"^[a-z][a-z0-9_]{0,40}$"  # a layer's id, which names its tables and is a part of its URLs
WEB_MERCATOR_GEOM = "geom_3857"  # live tables also keep each geometry in EPSG:3857, for Web Mercator tiles

SQL_TYPES: dict[str, str] = {
    "text": "text",
    "integer": "integer",
    "bigint": "bigint",
    "double": "double precision",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamptz",
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class I18n(Strict):
    """A text in Traditional Chinese (zh-TW, the primary language) and English."""

    zh_TW: str = Field(alias="zh-TW", min_length=1)
    en: str = Field(min_length=1)

    def get(self, lang: str | None) -> str:
        return self.en if lang and lang.lower().startswith("en") else self.zh_TW


class LayerField(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    type: FieldType
    title: I18n
    description: I18n | None = None
    required: bool = False
    standard: str | None = Field(default=None, description="the field's name in the government data standard "
                                                           "(schema.gov.tw) it follows, if any")


class Grant(Strict):
    agency: str
    roles: list[str] = Field(default_factory=list, description="empty: every role of the agency")
    expires: AwareDatetime | None = Field(default=None, description="the grant stops working at this moment "
                                                                     "(with its time zone); none: it does not expire")


class Access(Strict):
    level: Literal["public", "internal", "restricted"]
    grants: list[Grant] = Field(default_factory=list)

    @model_validator(mode="after")
    def _grants_match_level(self):
        if self.level == "restricted" and not self.grants:
            raise ValueError("a restricted layer needs at least one grant (agency and roles)")
        if self.level != "restricted" and self.grants:
            raise ValueError(f"grants only apply to restricted layers, not to {self.level!r}")
        return self


class Contact(Strict):
    organization: I18n
    name: str
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str


class Publishing(Strict):
    tgos_file_identifier: str | None = Field(default=None, pattern=r"^TW-\d{2}-[0-9A-Z]{10}-\d{6}$")
    datagov_identifier: str | None = Field(default=None, pattern=r"^[0-9A-Z]+-\d{6}$")
    datagov_category: str | None = None


class Zooms(Strict):
    min: int = Field(default=0, ge=0, le=24)
    max: int = Field(default=22, ge=0, le=24)


Columns = str | list[str]  # a source column, or the names it may go by


def _epsg(value: str) -> str:
    try:
        crs = CRS.from_user_input(value)
    except CRSError:
        raise ValueError(f"unknown CRS {value!r}; write it as EPSG:<code>, e.g. EPSG:3826") from None
    code = crs.to_epsg()
    if code is None:
        raise ValueError(f"CRS {value!r} has no EPSG code; write it as EPSG:<code>")
    return f"EPSG:{code}"


class SourceMapping(Strict):
    """An agency layer's source, where inferring it is not enough: the keys of an etl/*.yml
    pipeline's ``source`` and ``outputs[].fields``, for the files the agency uploads. Unset, a field
    is read from the column of its name or title, a CSV's coordinates from the usual X/Y names."""

    fields: dict[str, Columns] = Field(default_factory=dict,
                                       description="catalog field -> the source column (or its accepted names)")
    x: Columns | None = Field(default=None, description="CSV: the X (easting or longitude) column")
    y: Columns | None = Field(default=None, description="CSV: the Y (northing or latitude) column")
    encoding: Literal["auto", "utf-8", "cp950"] | None = None
    crs: str | None = Field(default=None, description="the source's CRS when it declares none (a CSV's X/Y)")

    @field_validator("crs")
    @classmethod
    def _known_crs(cls, value: str | None) -> str | None:
        return value and _epsg(value)

    @model_validator(mode="after")
    def _both_coordinates(self):
        if (self.x is None) != (self.y is None):
            raise ValueError("give both 'x' and 'y' (the CSV's coordinate columns), or neither")
        return self

    def columns(self) -> dict[str, list[str]]:
        """Key path -> the columns it names, for every column the mapping names."""
        named = {f"source.fields.{k}": v for k, v in self.fields.items()} | {"source.x": self.x, "source.y": self.y}
        return {key: [v] if isinstance(v, str) else v for key, v in named.items() if v is not None}


class Layer(Strict):
    id: str = Field(pattern=LAYER_ID)
    title: I18n
    description: I18n
    kind: Literal["vector", "raster"]
    geometry: GeometryType | None = None
    crs: str = "EPSG:3826"
    key: str | None = Field(default=None, description="natural key field: diffs and item ids use it")
    time_field: str | None = None
    fields: list[LayerField] = Field(default_factory=list)
    indexes: list[list[str]] = Field(default_factory=list, description="extra b-tree indexes, by field names")
    access: Access
    update_frequency: Frequency
    license: str = OGDL_TW
    license_url: str = OGDL_TW_URL
    keywords: list[str] = Field(default_factory=list)
    topic_category: str | None = None
    scale_denominator: int | None = None
    contact: Contact
    style: str | None = None
    zooms: Zooms = Field(default_factory=Zooms)
    publishing: Publishing = Field(default_factory=Publishing)
    source: SourceMapping | None = Field(default=None, description="agency layers: how an uploaded file maps "
                                                                   "onto the layer, where inferring is not enough")

    @field_validator("crs")
    @classmethod
    def _known_crs(cls, value: str) -> str:
        return _epsg(value)

    @model_validator(mode="after")
    def _consistent(self):
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"field names must be unique; repeated: {', '.join(dupes)}")
        if self.kind == "vector":
            if self.geometry is None:
                raise ValueError("a vector layer needs 'geometry' (Point, LineString, Polygon, Multi...)")
            if self.key is None:
                raise ValueError("a vector layer needs 'key', the natural key field used for diffs and ids")
            for i, index in enumerate(self.indexes):
                unknown = [n for n in index if n not in names]
                if unknown or not index:
                    raise ValueError(f"indexes[{i}] names unknown fields: {', '.join(unknown) or '(none)'}")
            for attr in ("key", "time_field"):
                value = getattr(self, attr)
                if value is not None and value not in names:
                    raise ValueError(f"{attr} {value!r} is not one of the layer's fields: {', '.join(names)}")
        elif self.geometry is not None or self.fields:
            raise ValueError("a raster layer has no 'geometry' or 'fields'")
        if self.zooms.min > self.zooms.max:
            raise ValueError("zooms.min must not exceed zooms.max")
        return self

    @property
    def srid(self) -> int:
        return int(self.crs.split(":")[1])

    @property
    def is_public(self) -> bool:
        return self.access.level == "public"

    def csv_columns(self) -> list[str]:
        """The columns of the CSV download: the fields in order, then the geometry (lon/lat and TWD97
        X/Y for points, WKT in the storage CRS otherwise). Portals' field descriptions list the same."""
        geometry = ["lon", "lat", "x_twd97", "y_twd97"] if self.geometry == "Point" else ["wkt"]
        return [f.name for f in self.fields] + geometry

    def field(self, name: str) -> LayerField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


class Address(Strict):
    delivery_point: str
    city: str
    postal_code: str = Field(pattern=r"^\d{3,6}$")
    country: str = "中華民國"


class Publisher(Strict):
    """The city as the publisher of its open data: the identity portals and TGOS records carry."""

    name: I18n
    org_code: str = Field(pattern=r"^[0-9A-Z]{10}$",
                          description="agency code: data.gov.tw publisherOrgCode and TGOS identifiers")
    oid: str = Field(pattern=r"^\d+(\.\d+)+$", description="the government organization OID (publisherOID)")
    contact: Contact
    address: Address
    website: str = Field(pattern=r"^https?://")


class Agency(Strict):
    code: str = Field(pattern=r"^[0-9A-Za-z_-]{2,20}$")
    name: I18n
    city_agency: bool = True

