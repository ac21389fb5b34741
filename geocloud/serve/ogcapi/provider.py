"""geocloud's pygeoapi feature provider: reads the live version's table through a psycopg 3 pool.

GeoJSON is built by PostGIS (``ST_AsGeoJSON``, reprojected with ``ST_Transform`` and put in the
axis order the requested CRS defines); a GeoJSON page carries that text to the response undecoded
(``QueryExtras.raw``), so Python only joins strings, while the HTML and JSON-LD pages get the
decoded features pygeoapi renders. Paging fetches one row more
than asked, which tells exactly whether a next page exists. ``numberMatched`` is exact where it is
cheap (no filter: the live version's count; a filter the planner expects to match at most
GEOCLOUD_EXACT_COUNT_LIMIT rows, 10,000 by default: a real count) and otherwise the planner's estimate, marked by
``numberMatchedIsEstimate: true``.
"""

import contextvars
import json
from dataclasses import dataclass, field
from functools import lru_cache

import psycopg
from psycopg import ClientCursor, sql
from pygeoapi.provider.base import (
    BaseProvider,
    ProviderInvalidQueryError,
    ProviderItemNotFoundError,
)
from pyproj import CRS

from geocloud.catalog import get_catalog
from geocloud.catalog.models import SQL_TYPES
from geocloud.config import get_settings
from geocloud.db.pool import get_pool
from geocloud.serve.state import live_column, snapshot, tables

JSON_TYPES = {"text": ("string", None), "integer": ("integer", None), "bigint": ("integer", None),
              "double": ("number", None), "boolean": ("boolean", None), "date": ("string", "date"),
              "timestamp": ("string", "date-time")}


@dataclass
class QueryExtras:
    """What geocloud's items route hands the provider beside pygeoapi's arguments."""

    where: sql.Composable | None = None
    params: list = field(default_factory=list)
    after: str | None = None              # keyset cursor: the last key of the previous page
    bbox: list[float] | None = None       # the bbox, already in the storage CRS
    has_more: bool | None = None          # set by the provider: is there a next page?
    last_key: str | None = None           # set by the provider: the last key of this page
    estimated: bool = False
    raw: bool = False                     # set by the route: leave the features as PostGIS wrote them
    features: list[str] | None = None     # set by the provider when raw: each feature's GeoJSON text


extras: contextvars.ContextVar[QueryExtras | None] = contextvars.ContextVar("geocloud_query_extras", default=None)


def column(layer, name: str) -> sql.Composable:
    """``t.<name>``, or NULL when the live table predates the field (after a rollback)."""
    live = snapshot().layers.get(layer.id)
    return live_column(name, live.columns if live is not None else None)


def where(layer, bbox, properties=(), datetime_=None, extra: QueryExtras | None = None) -> tuple[list, list]:
    """WHERE clauses over ``live.<layer> t`` and their parameters: bbox (storage CRS), property
    equality, datetime, and the route's CQL2 filter."""
    clauses, params = [], []
    if extra is not None and extra.bbox is not None:
        bbox = extra.bbox
    if bbox:
        clauses.append(sql.SQL("ST_Intersects(t.geom, ST_MakeEnvelope(%s, %s, %s, %s, {}))").format(
            sql.Literal(layer.srid)))
        params.extend(float(v) for v in bbox[:4])
    for name, value in properties or []:
        ftype = layer.field(name).type
        clauses.append(sql.SQL("t.{} = %s::{}").format(sql.Identifier(name), sql.SQL(SQL_TYPES[ftype])))
        params.append(value)
    if datetime_ and layer.time_field:
        col = sql.Identifier(layer.time_field)
        if "/" in datetime_:
            start, end = datetime_.split("/", 1)
            if start not in ("", ".."):
                clauses.append(sql.SQL("t.{} >= %s::timestamptz").format(col))
                params.append(start)
            if end not in ("", ".."):
                clauses.append(sql.SQL("t.{} <= %s::timestamptz").format(col))
                params.append(end)
        else:
            clauses.append(sql.SQL("t.{} = %s::timestamptz").format(col))
            params.append(datetime_)
    if extra is not None and extra.where is not None:
        clauses.append(extra.where)
        params.extend(extra.params)
    return clauses, params


@lru_cache(maxsize=64)
def srid_and_flip(uri: str | None, storage_srid: int) -> tuple[int, bool]:
    """EPSG code for ST_Transform, and whether the CRS puts latitude (northing) first. pygeoapi
    passes no transformation (None) when the requested CRS is the storage CRS."""
    if uri is None:
        return storage_srid, False
    if uri.endswith("/CRS84"):
        return 4326, False
    crs = CRS.from_user_input(uri)
    first = crs.axis_info[0].direction.lower() if crs.axis_info else "east"
    return crs.to_epsg(), first in ("north", "south")


@lru_cache(maxsize=64)
def _projected(srid: int) -> bool:
    return CRS.from_epsg(srid).is_projected


class GeocloudProvider(BaseProvider):
    def __init__(self, provider_def):
        super().__init__(provider_def)
        self.layer = get_catalog().layer(provider_def["data"])
        self.id_field = self.layer.key
        self._fields = {}
        for f in self.layer.fields:
            jtype, fmt = JSON_TYPES[f.type]
            self._fields[f.name] = {"type": jtype, "title": f.title.en, "x-title-zh-TW": f.title.zh_TW,
                                    **({"format": fmt} if fmt else {})}

    def get_fields(self):
        return self._fields

    # -- SQL pieces ---------------------------------------------------------
    def _geometry(self, crs_transform_spec, skip: bool) -> sql.Composable:
        if skip:
            return sql.SQL("NULL::json")
        srid, flip = srid_and_flip(crs_transform_spec.target_crs_uri if crs_transform_spec else None, self.layer.srid)
        geom = sql.SQL("t.geom") if srid == self.layer.srid else sql.SQL("ST_Transform(t.geom, {})").format(sql.Literal(srid))
        if flip:
            geom = sql.SQL("ST_FlipCoordinates({})").format(geom)
        digits = 3 if _projected(srid) else 8
        return sql.SQL("ST_AsGeoJSON({}, {})::json").format(geom, sql.Literal(digits))

    def _feature(self, crs_transform_spec, select_properties, skip_geometry) -> sql.Composable:
        names = [f.name for f in self.layer.fields if not select_properties or f.name in select_properties]
        props = sql.SQL(", ").join(sql.SQL("{}, {}").format(sql.Literal(n), column(self.layer, n)) for n in names)
        return sql.SQL("json_build_object('type', 'Feature', 'id', t.{}, 'geometry', {}, 'properties', "
                       "json_build_object({}))::text").format(
            sql.Identifier(self.layer.key), self._geometry(crs_transform_spec, skip_geometry), props)

    def _table(self, conn) -> sql.Composable:
        """The table of the live version the request's snapshot names (see state.tables)."""
        return tables(conn, [self.layer.id])[self.layer.id]

    def _count(self, conn, table, where: sql.Composable, params: list, filtered: bool,
               seen: int | None) -> tuple[int, bool]:
        """numberMatched, and whether it is an estimate. ``seen``: the count the page itself proves
        (a last page read by offset: the rows skipped and the rows returned), which needs no query."""
        if not filtered:
            live = snapshot().layers.get(self.layer.id)
            if live and live.feature_count is not None:
                return live.feature_count, False
        if seen is not None:
            return seen, False
        rows_sql = sql.SQL("SELECT 1 FROM {} t {}").format(table, where)
        with ClientCursor(conn) as cur:  # client-side binding: EXPLAIN takes no server-side parameters
            plan = cur.execute(sql.SQL("EXPLAIN (FORMAT JSON) ") + rows_sql, params).fetchone()[0]
        estimate = int(plan[0]["Plan"]["Plan Rows"])
        if estimate > get_settings().exact_count_limit:
            return estimate, True
        return conn.execute(sql.SQL("SELECT count(*) FROM ({}) s").format(rows_sql), params).fetchone()[0], False

    # -- pygeoapi interface -------------------------------------------------
    def query(self, offset=0, limit=10, resulttype="results", bbox=[], datetime_=None, properties=[], sortby=[],
              select_properties=[], skip_geometry=False, q=None, filterq=None, crs_transform_spec=None, **kwargs):
        ext = extras.get()
        clauses, params = where(self.layer, bbox, properties, datetime_, ext)
        condition = sql.SQL("WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
        page_condition, page_params = condition, params
        keyset = ext is not None and ext.after is not None and not sortby
        if keyset:
            # keyset paging: as fast on the last page as on the first, unlike a deep OFFSET
            page_condition = sql.SQL("WHERE ") + sql.SQL(" AND ").join(
                [*clauses, sql.SQL("t.{} > %s").format(sql.Identifier(self.layer.key))])
            page_params, offset = [*params, ext.after], 0
        order = [sql.SQL("t.{} {}").format(sql.Identifier(s["property"]), sql.SQL("DESC" if s["order"] == "-" else "ASC"))
                 for s in sortby or []]
        order.append(sql.SQL("t.{}").format(sql.Identifier(self.layer.key)))
        try:
            with get_pool().connection() as conn:
                table = self._table(conn)
                features: list[str] = []
                seen = None
                if resulttype != "hits":
                    query = sql.SQL("SELECT {}, t.{}::text FROM {} t {} ORDER BY {} LIMIT %s OFFSET %s").format(
                        self._feature(crs_transform_spec, select_properties, skip_geometry),
                        sql.Identifier(self.layer.key), table, page_condition, sql.SQL(", ").join(order))
                    rows = conn.execute(query, [*page_params, limit + 1, offset]).fetchall()
                    features = [r[0] for r in rows]
                    if len(rows) <= limit and not keyset and (rows or not offset):
                        seen = offset + len(rows)  # the last page: every match skipped or returned
                # the same REPEATABLE READ transaction: the count and the page see the same rows
                matched, estimated = self._count(conn, table, condition, params, bool(clauses), seen)
        except psycopg.errors.DataException as exc:  # e.g. an invalid geometry literal in a filter
            raise ProviderInvalidQueryError(f"filter: {str(exc).strip().splitlines()[0]}") from None
        if ext is not None:
            ext.has_more = len(features) > limit
            ext.last_key = rows[min(limit, len(rows)) - 1][1] if features and not sortby else None
            ext.estimated = estimated
        features = features[:limit]
        if ext is not None and ext.raw:
            # the route puts the text in place of these placeholders once pygeoapi has written the
            # document: a page is not decoded here and encoded again there (features.with_features)
            ext.features = features
            result = {"type": "FeatureCollection", "features": [None] * len(features)}
        else:
            result = json.loads('{"type": "FeatureCollection", "features": [' + ",".join(features) + "]}")
        result["numberMatched"] = matched
        result["numberReturned"] = len(features)
        return result

    def get(self, identifier, crs_transform_spec=None, **kwargs):
        with get_pool().connection() as conn:
            query = sql.SQL("SELECT {} FROM {} t WHERE t.{} = %s::text").format(
                self._feature(crs_transform_spec, [], False), self._table(conn), sql.Identifier(self.layer.key))
            row = conn.execute(query, [str(identifier)]).fetchone()
        if row is None:
            raise ProviderItemNotFoundError(f"no item {identifier!r} in collection {self.layer.id!r}")
        return json.loads(row[0])

