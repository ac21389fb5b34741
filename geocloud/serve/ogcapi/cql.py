"""CQL2 filters (text or JSON, parsed by pygeofilter) to parameterized PostGIS SQL.

Every literal becomes a bind parameter cast to the column's catalog type, and every property
must be one of the layer's queryables, so a filter can neither inject SQL nor reach a column the
catalog does not publish. A problem raises FilterError naming what is wrong (a 400 for clients).
"""

import json
import math
from datetime import date, datetime

import pygeofilter.ast as ast
import pygeofilter.values as values
import shapely
from psycopg import sql
from pygeofilter.backends.evaluator import Evaluator, handle
from pygeofilter.parsers.cql2_json import parse as parse_json
from pygeofilter.parsers.cql2_text import parse as parse_text
from shapely.geometry import shape

from geocloud.catalog.models import SQL_TYPES, Layer

GEOMETRY_NAMES = {"geometry", "geom", "the_geom"}
PY_TYPES = {"text": str, "integer": int, "bigint": int, "double": float, "boolean": bool}
COMPARE = {ast.Equal: "=", ast.NotEqual: "<>", ast.LessThan: "<", ast.LessEqual: "<=", ast.GreaterThan: ">",
           ast.GreaterEqual: ">="}
SPATIAL = {ast.GeometryIntersects: "ST_Intersects", ast.GeometryContains: "ST_Contains",
           ast.GeometryWithin: "ST_Within", ast.GeometryDisjoint: "ST_Disjoint", ast.GeometryEquals: "ST_Equals",
           ast.GeometryTouches: "ST_Touches", ast.GeometryCrosses: "ST_Crosses", ast.GeometryOverlaps: "ST_Overlaps"}


INTEGER_RANGES = {"integer": (-2**31, 2**31 - 1), "bigint": (-2**63, 2**63 - 1)}
BOOLEANS = {"true": True, "false": False, "1": True, "0": False}
MAX_FILTER = 16_384  # characters: a filter longer than any URL a proxy passes is refused early


class FilterError(ValueError):
    """A filter that cannot be applied; the message is for the client."""


def checked_value(ftype: str | None, value):
    """``value`` as a field of catalog type ``ftype`` holds it, or ValueError saying why it cannot
    be: PostgreSQL would refuse it (NUL in text, an integer beyond the column's range, a
    non-finite number), and a 500 is no answer to a client's typo."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("text must not contain NUL (\\0) characters")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
    if ftype in ("date", "timestamp") and isinstance(value, str):
        return parse_value(ftype, value)
    if ftype in PY_TYPES and isinstance(value, (datetime, date)):
        raise ValueError(f"{value.isoformat()} is a date or time, not a valid {ftype}")
    if ftype in PY_TYPES:  # a date or time was refused just above
        if ftype == "boolean" and isinstance(value, str):
            if value.strip().lower() not in BOOLEANS:
                raise ValueError(f"{value!r} is not a boolean (true or false)")
            return BOOLEANS[value.strip().lower()]
        if not (ftype in INTEGER_RANGES and isinstance(value, float) and not value.is_integer()):
            try:
                value = PY_TYPES[ftype](value)
            except (TypeError, ValueError, OverflowError):
                raise ValueError(f"{value!r} is not a valid {ftype}") from None
    if ftype in INTEGER_RANGES and isinstance(value, int) and not isinstance(value, bool):
        low, high = INTEGER_RANGES[ftype]
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range for an {ftype} ({low} to {high})")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    return value


def parse_value(ftype: str, text: str):
    """A query parameter's text as a value of catalog type ``ftype`` (ValueError if it is not one)."""
    if ftype == "date":
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a date (YYYY-MM-DD)") from None
    if ftype == "timestamp":
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an RFC 3339 date-time") from None
    return checked_value(ftype, text)


def _check_geometries(node) -> None:
    """Refuse geometry literals PostGIS or the CRS transformation would fail on: too few points,
    non-finite coordinates, invalid shapes (self-intersections), each named in the message."""
    if isinstance(node, values.Geometry):
        try:
            geom = shape(node.geometry)
        except (ValueError, TypeError, AttributeError, KeyError, IndexError, shapely.errors.ShapelyError) as exc:
            raise FilterError(f"filter: invalid geometry literal: {exc}") from None
        if not all(math.isfinite(c) for c in shapely.get_coordinates(geom).ravel()):
            raise FilterError("filter: geometry literal has non-finite coordinates")
        if not geom.is_valid:
            raise FilterError(f"filter: invalid geometry literal: {shapely.is_valid_reason(geom)}")
    elif isinstance(node, ast.Node):
        for child in node.get_sub_nodes():
            _check_geometries(child)


def parse(text: str, lang: str | None):
    lang = (lang or "cql2-text").lower()
    if lang not in ("cql2-text", "cql2-json"):
        raise FilterError(f"filter-lang {lang!r} is not supported; use cql2-text or cql2-json")
    if len(text) > MAX_FILTER:
        raise FilterError(f"filter: longer than {MAX_FILTER} characters ({len(text)}); use a bbox or split the query")
    try:
        node = _boxes_as_polygons(parse_json(text) if lang == "cql2-json" else parse_text(text))
    except RecursionError:
        raise FilterError("filter: nested too deeply") from None
    except Exception as exc:  # pygeofilter raises lark and json errors of many kinds
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FilterError(f"filter is not valid {lang}: {first}") from None
    _check_geometries(node)
    return node


def _box_polygon(x1, y1, x2, y2) -> values.Geometry:
    ring = [(x1, y1), (x2, y1), (x2, y2), (x1, y2), (x1, y1)]
    return values.Geometry({"type": "Polygon", "coordinates": [ring]})


def _boxes_as_polygons(node):
    """BBOX(...) literals become polygons, so that pygeoapi's filter-crs transformation (which
    handles geometry literals only) moves them into the storage CRS too."""
    if isinstance(node, ast.Node):
        for name in ("lhs", "rhs", "sub_nodes"):
            value = getattr(node, name, None)
            if isinstance(value, list):
                setattr(node, name, [_boxes_as_polygons(v) for v in value])
            elif value is not None:
                setattr(node, name, _boxes_as_polygons(value))
    if isinstance(node, ast.Function) and node.name.lower() == "bbox" and len(node.arguments) in (4, 6):
        args = node.arguments
        half = len(args) // 2
        if all(isinstance(a, (int, float)) for a in args):
            return _box_polygon(args[0], args[1], args[half], args[half + 1])
    if isinstance(node, values.Envelope):
        return _box_polygon(node.x1, node.y1, node.x2, node.y2)
    return node


class _Column:
    def __init__(self, name: str, ftype: str | None):
        self.name, self.ftype = name, ftype
        self.sql = sql.SQL("t.{}").format(sql.Identifier(name))


class _Literal:
    def __init__(self, value):
        self.value = value


class _ToSQL(Evaluator):
    def __init__(self, layer: Layer):
        self.layer = layer
        self.fields = {f.name: f.type for f in layer.fields}
        self.params: list = []

    # values ---------------------------------------------------------------
    @handle(ast.Attribute)
    def attribute(self, node):
        if node.name in GEOMETRY_NAMES:
            return _Column("geom", None)
        if node.name not in self.fields:
            raise FilterError(f"filter: unknown property {node.name!r}; queryables are "
                              f"{', '.join(sorted(self.fields))} and geometry")
        return _Column(node.name, self.fields[node.name])

    @handle(str, int, float, bool, datetime, date)
    def literal(self, node):
        return _Literal(node)

    @handle(values.Geometry)
    def geometry(self, node):
        text = json.dumps(node.geometry)
        if "Infinity" in text or "NaN" in text:  # e.g. a latitude beyond 90 moved into the layer's CRS
            raise FilterError("filter: a geometry literal lies outside the area its CRS (filter-crs) covers")
        self.params.append(text)
        return sql.SQL("ST_SetSRID(ST_GeomFromGeoJSON({}), {})").format(sql.Placeholder(), sql.Literal(self.layer.srid))

    @handle(values.Envelope)
    def envelope(self, node):
        self.params.extend([node.x1, node.y1, node.x2, node.y2])
        return sql.SQL("ST_MakeEnvelope({}, {}, {}, {}, {})").format(*[sql.Placeholder()] * 4, sql.Literal(self.layer.srid))

    @handle(ast.Function)
    def function(self, node, *args):
        name = node.name.lower()
        if name == "bbox" and len(args) == 4 and all(isinstance(a, _Literal) for a in args):
            try:
                self.params.extend(checked_value("double", a.value) for a in args)
            except ValueError as exc:
                raise FilterError(f"filter: BBOX: {exc}") from None
            return sql.SQL("ST_MakeEnvelope({}, {}, {}, {}, {})").format(*[sql.Placeholder()] * 4,
                                                                         sql.Literal(self.layer.srid))
        if name in ("lower", "casei") and len(args) == 1:
            arg = args[0]
            if isinstance(arg, _Literal):
                return _Literal(str(arg.value).lower())
            if isinstance(arg, _Column):
                col = _Column(arg.name, "text")
                col.sql = sql.SQL("lower({}::text)").format(arg.sql)
                return col
        raise FilterError(f"filter: function {node.name}() is not supported (supported: CASEI, BBOX)")

    # helpers --------------------------------------------------------------
    def _value(self, operand, ftype: str | None) -> sql.Composable:
        if isinstance(operand, _Column):
            return operand.sql
        if isinstance(operand, _Literal):
            try:
                value = checked_value(ftype, operand.value)
            except ValueError as exc:
                raise FilterError(f"filter: {exc}") from None
            self.params.append(value)
            cast = SQL_TYPES.get(ftype or "", None)
            if cast and not (ftype in ("integer", "bigint") and isinstance(value, float)):
                return sql.SQL("{}::{}").format(sql.Placeholder(), sql.SQL(cast))
            return sql.Placeholder()
        if isinstance(operand, sql.Composable):
            return operand
        raise FilterError("filter: unsupported expression (arithmetic and nested expressions are not supported)")

    @staticmethod
    def _type_of(*operands) -> str | None:
        return next((o.ftype for o in operands if isinstance(o, _Column) and o.ftype), None)

    # predicates -----------------------------------------------------------
    @handle(ast.And, ast.Or)
    def combination(self, node, lhs, rhs):
        op = sql.SQL(" AND " if isinstance(node, ast.And) else " OR ")
        return sql.SQL("({})").format(op.join([lhs, rhs]))

    @handle(ast.Not)
    def not_(self, node, sub):
        return sql.SQL("(NOT {})").format(sub)

    @handle(*COMPARE)
    def comparison(self, node, lhs, rhs):
        ftype = self._type_of(lhs, rhs)
        return sql.SQL("({} {} {})").format(self._value(lhs, ftype), sql.SQL(COMPARE[type(node)]), self._value(rhs, ftype))

    @handle(ast.Between)
    def between(self, node, lhs, low, high):
        ftype = self._type_of(lhs)
        return sql.SQL("({} {}BETWEEN {} AND {})").format(
            self._value(lhs, ftype), sql.SQL("NOT " if node.not_ else ""), self._value(low, ftype), self._value(high, ftype))

    @handle(ast.In)
    def in_(self, node, lhs, *options):
        ftype = self._type_of(lhs)
        items = sql.SQL(", ").join(self._value(o, ftype) for o in options)
        return sql.SQL("({} {}IN ({}))").format(self._value(lhs, ftype), sql.SQL("NOT " if node.not_ else ""), items)

    @handle(ast.IsNull)
    def is_null(self, node, lhs):
        return sql.SQL("({} IS {}NULL)").format(self._value(lhs, None), sql.SQL("NOT " if node.not_ else ""))

    @handle(ast.Like)
    def like(self, node, lhs):
        if not isinstance(lhs, _Column) or not isinstance(node.pattern, str):
            raise FilterError("filter: LIKE needs a property on the left and a text pattern on the right")
        if "\x00" in node.pattern:
            raise FilterError("filter: a LIKE pattern must not contain NUL (\\0) characters")
        self.params.append(_like_pattern(node.pattern, node.wildcard, node.escapechar))
        return sql.SQL("({}::text {}{} {})").format(lhs.sql, sql.SQL("NOT " if node.not_ else ""),
                                                   sql.SQL("ILIKE" if node.nocase else "LIKE"), sql.Placeholder())

    @handle(*SPATIAL)
    def spatial(self, node, lhs, rhs):
        return sql.SQL("{}({}, {})").format(sql.SQL(SPATIAL[type(node)]), self._geometry(lhs), self._geometry(rhs))

    def _geometry(self, operand) -> sql.Composable:
        if isinstance(operand, _Column):
            if operand.name != "geom":
                raise FilterError(f"filter: {operand.name!r} is not a geometry")
            return operand.sql
        if isinstance(operand, sql.Composable):
            return operand
        raise FilterError("filter: spatial predicates compare the geometry with a geometry or BBOX literal")

    def adopt(self, node, *args):
        raise FilterError(f"filter: {type(node).__name__} is not supported")


def _like_pattern(pattern: str, wildcard: str, escape: str) -> str:
    """A CQL2 LIKE pattern (``%`` any text, ``_`` one character) as a SQL LIKE pattern."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if escape and ch == escape and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append("\\" + nxt if nxt in "%_\\" else nxt)
            i += 2
            continue
        if ch == wildcard:
            out.append("%")
        elif ch == "_":
            out.append("_")
        elif ch in "%\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def to_sql(node, layer: Layer) -> tuple[sql.Composable, list]:
    """(WHERE clause over table alias ``t``, bind parameters) for a parsed filter."""
    visitor = _ToSQL(layer)
    try:
        clause = visitor.evaluate(node)
    except RecursionError:
        raise FilterError("filter: nested too deeply") from None
    if isinstance(clause, (_Column, _Literal)):
        raise FilterError("filter: the expression is not a condition")
    return clause, visitor.params
