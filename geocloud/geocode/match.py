"""Match parsed addresses against the live 門牌 layer, many at a time.

Each step is one SQL statement for a whole batch (``unnest`` of the queries, ``LATERAL`` lookups
on the ``(road, number_value)`` index), and only the rows it leaves unmatched go to the next:

1. ``exact``: road, section, lane, alley and number equal (floors ignored for the point);
2. ``fuzzy:nearest-number:same-parity`` or ``…:other-parity``: same road, section, lane and alley,
   the nearest house number within ``max_distance``, same parity (side of the street) first unless
   ``same_parity`` is off; the label says the parity of the number matched (100號 -> 99號 is
   ``other-parity`` when no even number is near enough);
3. ``road``: no house number matched: the centre of the address points of the road and section
   (and of the lane, when locked);
4. ``fuzzy:road-name…``: the road is not in the layer at all (one wrong character, 進工路 for
   進化路): step 1 on each road name one edit away (``roadnames``), then steps 2-3 on them for
   the queries none of them holds exactly, the best kept: ``fuzzy:road-name`` for an exact address on the corrected
   road, ``fuzzy:road-name:nearest-number:…`` or ``fuzzy:road-name:road`` otherwise. Off with
   ``lock=road`` or ``fuzzy=none``.

Steps 1-3 never leave the query's road and section. Locks keep every step inside the query's
``county`` or ``district`` too; ``lane`` keeps the road-level step inside the lane; ``road``
keeps the query's road name as typed.

A candidate is ``ambiguous`` when the query does not tell it from another: the same address in
two districts and no district (or another one) in the query, or two corrected road names that
match equally well.
"""

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from psycopg import sql

from geocloud.geocode import roadnames
from geocloud.geocode.query import Parts

LOCKS = ("county", "district", "road", "lane")
PART_COLUMNS = ["address_key", "full_address", "county", "district", "village", "neighborhood", "road", "section",
                "lane", "alley", "number", "floor"]


@dataclass(frozen=True)
class Options:
    candidates: int = 1
    max_distance: int = 30
    same_parity: bool = True
    locks: frozenset = frozenset()
    srid: int = 4326
    flip: bool = False  # EPSG:4326 answers in lat/lon order
    road_names: bool = True  # correct a road name the layer does not hold (step 4)


@dataclass
class Candidate:
    match_type: str
    score: float
    parts: dict
    x: float
    y: float
    ambiguous: bool = False


@dataclass
class Result:
    candidates: list[Candidate] = field(default_factory=list)
    error: str | None = None

    @property
    def match_type(self) -> str:
        return self.candidates[0].match_type if self.candidates else ("error" if self.error else "none")


def xy_columns(options: Options, alias: str = "a.geom") -> sql.Composable:
    geom = sql.SQL(alias)
    if options.srid != 3826:
        geom = sql.SQL("ST_Transform({}, {})").format(geom, sql.Literal(options.srid))
    first, second = ("ST_Y", "ST_X") if options.flip else ("ST_X", "ST_Y")
    return sql.SQL("{}({}), {}({})").format(sql.SQL(first), geom, sql.SQL(second), geom)


_QUERY_COLUMNS = sql.SQL("i int, road text, section text, lane text, alley text, number text, nv int, "
                         "district text, county text")


def _queries(rows: list[tuple[int, Parts]]) -> tuple[sql.Composable, list]:
    """The queries as a table ``q``, sent as one JSON document: psycopg dumps one string in C
    where nine arrays of a 2,000-row chunk took it about 100 ms."""
    doc = json.dumps([{"i": i, "road": p.road_pattern or p.road, "section": p.section, "lane": p.lane,
                       "alley": p.alley, "number": p.number, "nv": p.number_value, "district": p.district,
                       "county": p.county} for i, p in rows], ensure_ascii=False)
    return sql.SQL("json_to_recordset(%s::json) AS q({})").format(_QUERY_COLUMNS), [doc]


def _road_match(pattern: bool) -> sql.Composable:
    return sql.SQL("a.road LIKE q.road") if pattern else sql.SQL("a.road = q.road")


def _lock_conditions(options: Options) -> sql.Composable:
    out = []
    if "county" in options.locks:
        out.append(sql.SQL("(q.county = '' OR a.county = q.county)"))
    if "district" in options.locks:
        out.append(sql.SQL("(q.district = '' OR a.district = q.district)"))
    return sql.SQL("").join(sql.SQL(" AND ") + c for c in out)


# the rows found span several districts and the query's district picks none of them out
_AMBIGUOUS = sql.SQL("min(a.district) OVER () <> max(a.district) OVER () "
                     "AND NOT coalesce(bool_or(a.district = q.district) OVER (), false)")
_SAME_PLACE = sql.SQL("coalesce(a.section, '') = q.section AND coalesce(a.lane, '') = q.lane "
                      "AND coalesce(a.alley, '') = q.alley")


def _step(conn, name: str, rows: list[tuple[int, Parts]], options: Options, pattern: bool) -> dict[int, list]:
    source, arrays = _queries(rows)
    parts = sql.SQL(", ").join(sql.SQL("a.{}").format(sql.Identifier(c)) for c in PART_COLUMNS)
    road = _road_match(pattern)
    locks = _lock_conditions(options)
    k = sql.Literal(options.candidates)
    if name == "exact":
        inner = sql.SQL("""SELECT {parts}, {ambiguous}, true AS same_side, 100.0 AS score, {xy} FROM live.addresses a
            WHERE {road} AND a.number_value = q.nv AND a.number = q.number AND {same}{locks}
            ORDER BY (a.district = q.district) DESC, (a.floor IS NULL) DESC, a.address_key LIMIT {k}""")
    elif name == "fuzzy":
        inner = sql.SQL("""SELECT {parts}, {ambiguous}, a.number_value %% 2 = q.nv %% 2 AS same_side,
                greatest(50.0, 95.0 - 1.5 * abs(a.number_value - q.nv)
                         - CASE WHEN a.number_value %% 2 <> q.nv %% 2 THEN 10 ELSE 0 END) AS score, {xy}
            FROM live.addresses a
            WHERE {road} AND a.number_value BETWEEN q.nv - {d} AND q.nv + {d} AND {same}{locks}
            ORDER BY (a.district = q.district) DESC, {parity}abs(a.number_value - q.nv), a.number_value,
                     (a.floor IS NULL) DESC, a.address_key LIMIT {k}""")
    else:  # road level: the centre of the road's (or lane's) address points
        lane = sql.SQL(" AND coalesce(a.lane, '') = q.lane") if "lane" in options.locks else sql.SQL("")
        inner = sql.SQL("""SELECT min(a.county) AS county, CASE WHEN count(DISTINCT a.district) = 1
                THEN min(a.district) END AS district, min(a.road) AS road, q.section AS section,
                CASE WHEN q.lane <> '' AND {lane_locked} THEN q.lane END AS lane,
                40.0 AS score, {xy} FROM live.addresses a
            WHERE {road} AND coalesce(a.section, '') = q.section{lane}{locks}
            HAVING count(*) > 0""").format(
            xy=xy_columns(options, "ST_Centroid(ST_Collect(a.geom))"), road=road, lane=lane,
            locks=locks, lane_locked=sql.Literal("lane" in options.locks))
        query = sql.SQL("SELECT q.i, m.* FROM {} CROSS JOIN LATERAL ({}) m").format(source, inner)
        out: dict[int, list] = {}
        for row in conn.execute(query, arrays).fetchall():
            i, county, district, road_name, section_, lane_, score, x, y = row
            parts_ = {"county": county, "district": district, "road": road_name, "section": section_ or None,
                      "lane": lane_}
            out.setdefault(i, []).append(Candidate("road", float(score), parts_, x, y))
        return out
    parity = sql.SQL("(a.number_value %% 2 <> q.nv %% 2), ") if options.same_parity else sql.SQL("")
    inner = inner.format(parts=parts, xy=xy_columns(options), road=road, same=_SAME_PLACE, locks=locks, k=k,
                         d=sql.Literal(options.max_distance), parity=parity, ambiguous=_AMBIGUOUS)
    query = sql.SQL("SELECT q.i, m.* FROM {} CROSS JOIN LATERAL ({}) m").format(source, inner)
    out = {}
    for row in conn.execute(query, arrays).fetchall():
        i, values, ambiguous, same_side, score, x, y = row[0], row[1:-5], *row[-5:]
        parts_ = dict(zip(PART_COLUMNS, values))
        kind = "exact" if name == "exact" else \
            f"fuzzy:nearest-number:{'same-parity' if same_side else 'other-parity'}"
        out.setdefault(i, []).append(Candidate(kind, float(score), parts_, x, y, bool(ambiguous)))
    return out


def match(conn, queries: list[Parts], options: Options) -> list[list[Candidate]]:
    """Candidates for every query, best first (empty when nothing matched)."""
    if not options.road_names or "road" in options.locks:
        return _match_steps(conn, queries, options)
    latest = roadnames.latest()  # no round trip; a road it holds is a road (a stale one only costs empty steps)
    fresh = functools.cache(lambda: roadnames.current(conn))  # one round trip, only for a road not in ``latest``

    def holds(road: str) -> bool:
        return (latest is not None and road in latest.names) or road in fresh().names
    results = _match_steps(conn, queries, options, holds)
    if not all(results):
        _correct_road_names(conn, fresh(), queries, results, options)
    return results


def _rank(c: Candidate, query: Parts) -> tuple:
    """Better first: the step that matched, the query's district, the score."""
    step = 0 if c.match_type == "exact" else 2 if c.match_type == "road" else 1
    return step, not (query.district and c.parts.get("district") == query.district), -c.score


def _correct_road_names(conn, roads: roadnames.Roads, queries: list[Parts], results: list[list[Candidate]],
                        options: Options) -> None:
    """Step 4 for the queries nothing matched: their address on each road name one edit away."""
    tries: list[tuple[int, Parts]] = []
    for i, query in enumerate(queries):
        if not results[i] and query.road and not query.road_pattern:
            tries += [(i, replace(query, road=name)) for name in roads.near(query.road)]
    found: dict[int, list[Candidate]] = {}
    for steps in (("exact",), ("fuzzy", "road")):  # a query matched exactly on one name tries no nearer number
        tries = [(i, p) for i, p in tries if i not in found]
        if not tries:
            break
        for (i, _), candidates in zip(tries, _match_steps(conn, [p for _, p in tries], options, steps=steps)):
            if candidates:
                found.setdefault(i, []).extend(candidates)
    for i, candidates in found.items():
        candidates.sort(key=lambda c: _rank(c, queries[i]))
        tied = len(candidates) > 1 and _rank(candidates[0], queries[i])[:2] == _rank(candidates[1], queries[i])[:2] \
            and candidates[0].parts.get("road") != candidates[1].parts.get("road")
        results[i] = [replace(c, match_type="fuzzy:road-name" + ("" if c.match_type == "exact" else ":" +
                                                                   c.match_type.removeprefix("fuzzy:")),
                              score=c.score - 10, ambiguous=c.ambiguous or tied)
                      for c in candidates[:options.candidates]]


def _match_steps(conn, queries: list[Parts], options: Options, holds: Callable[[str], bool] | None = None,
                 steps: tuple[str, ...] = ("exact", "fuzzy", "road")) -> list[list[Candidate]]:
    """Steps 1-3 (or those of ``steps``): candidates on the query's own road, best first. A road that
    ``holds`` says the layer does not have goes no further than the exact step (step 4 corrects it)."""
    results: list[list[Candidate]] = [[] for _ in queries]
    pending = list(enumerate(queries))
    for name in steps:
        for pattern in (False, True):
            rows = [(i, p) for i, p in pending if bool(p.road_pattern) == pattern
                    and (name == "road" or p.number_value is not None)]
            if not rows:
                continue
            found = _step(conn, name, rows, options, pattern)
            for i, candidates in found.items():
                results[i] = candidates
        pending = [(i, p) for i, p in pending if not results[i]]
        if pending and holds is not None:
            pending = [(i, p) for i, p in pending if p.road_pattern or holds(p.road)]
        if not pending:
            break
    return results
