"""Geocoding as the server and the CLI offer it: one address, a CSV batch, and reverse lookups."""

import csv
import io
from collections import Counter
from typing import Iterable, Iterator

from psycopg import sql

from geocloud.address.normalize import cn_to_int
from geocloud.geocode.match import LOCKS, Candidate, Options, match, xy_columns
from geocloud.geocode.query import NotAnAddress, Parts, parse

BATCH = 2_000       # addresses matched in one statement per step
WRITE_ROWS = 500    # CSV rows streamed back at a time
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG = "http://www.opengis.net/def/crs/EPSG/0/{}"
# The CRSs a geocoding answer can be in, by short name or OGC URI
CRS_CHOICES = {"CRS84": CRS84, CRS84: CRS84, **{f"EPSG:{c}": EPSG.format(c) for c in (4326, 3826)},
               **{EPSG.format(c): EPSG.format(c) for c in (4326, 3826)}}
TGOS_MATCH = {"exact": "完全比對", "fuzzy:nearest-number:same-parity": "[單雙號機制]+[最近門牌號機制]",
              "fuzzy:nearest-number:other-parity": "[最近門牌號機制]", "road": "道路層級"}
RESULT_COLUMNS = ["match_type", "score", "ambiguous", "matched_address", "county", "district", "village", "neighborhood",
                  "x", "y", "error"]


class BadRequest(ValueError):
    """A parameter or an input file that cannot be used; the message names it."""


def options_from(params, srid: int, flip: bool) -> Options:
    def integer(name, default, low, high):
        value = params.get(name)
        if value in (None, ""):
            return default
        try:
            number = int(value)
        except ValueError:
            raise BadRequest(f"{name}: must be an integer, got {value!r}") from None
        if not low <= number <= high:
            raise BadRequest(f"{name}: must be between {low} and {high}, got {number}")
        return number

    locks = frozenset(x.strip() for x in (params.get("lock") or "").split(",") if x.strip())
    if unknown := locks - set(LOCKS):
        raise BadRequest(f"lock: unknown level {', '.join(sorted(unknown))}; use any of {', '.join(LOCKS)}")
    parity = (params.get("same_parity") or "true").lower()
    if parity not in ("true", "false"):
        raise BadRequest(f"same_parity: must be true or false, got {parity!r}")
    fuzzy = (params.get("fuzzy") or "nearest").lower()
    if fuzzy not in ("nearest", "none"):
        raise BadRequest(f"fuzzy: must be nearest or none, got {fuzzy!r}")
    return Options(candidates=integer("candidates", 1, 1, 10),
                   max_distance=0 if fuzzy == "none" else integer("max_distance", 30, 0, 500),
                   same_parity=parity == "true", locks=locks, srid=srid, flip=flip, road_names=fuzzy != "none")


def _candidate_json(c: Candidate, crs_uri: str) -> dict:
    return {"matched_address": c.parts.get("full_address"), "match_type": c.match_type, "score": round(c.score, 1),
            "parts": {k: v for k, v in c.parts.items() if k not in ("address_key", "full_address")},
            "x": c.x, "y": c.y, "crs": crs_uri}


def geocode_one(conn, text: str, options: Options, crs_uri: str) -> dict:
    try:
        parts = parse(text)
    except NotAnAddress as exc:
        raise BadRequest(f"address: {exc}") from None
    candidates = match(conn, [parts], options)[0]
    return {"query": text, "parsed": parts.as_dict(), "match_type": candidates[0].match_type if candidates else "none",
            "ambiguous": bool(candidates) and candidates[0].ambiguous,
            "candidates": [_candidate_json(c, crs_uri) for c in candidates]}


def as_tgos(result: dict, srs: str) -> dict:
    """TGOS QueryAddr's JSON layout, so existing TGOS clients can switch by changing the URL."""
    rows = []
    for c in result["candidates"]:
        p = c["parts"]
        nb = f"{p['neighborhood']}鄰" if p.get("neighborhood") else ""
        section = str(_section_number(p.get("section"))) if p.get("section") else ""
        rows.append({
            "FULL_ADDR": "".join(x or "" for x in (p.get("county"), p.get("district"), p.get("village"), nb)) +
                         (c["matched_address"] or "").removeprefix((p.get("county") or "") + (p.get("district") or "")),
            "COUNTY": p.get("county") or "", "TOWN": p.get("district") or "", "VILLAGE": p.get("village") or "",
            "NEIGHBORHOOD": nb, "ROAD": p.get("road") or "", "SECTION": section, "LANE": p.get("lane") or "",
            "ALLEY": p.get("alley") or "", "NUMBER": f"{p['number']}號" if p.get("number") else "",
            "X": c["x"], "Y": c["y"]})
    first = result["candidates"][0]["match_type"] if result["candidates"] else None
    return {"Info": [{"IsSuccess": "True", "InAddress": result["query"], "InSRS": srs,
                      "OutTotal": str(len(rows)), "OutMatchType": TGOS_MATCH.get(first, "") if first else ""}],
            "AddressList": rows}


def _section_number(section: str) -> int | str:
    return cn_to_int(section) or section


def read_csv(data: bytes, column: str, where: str) -> tuple[list[str], list[dict]]:
    """Header and rows of an uploaded or named CSV, which must be UTF-8 and hold ``column``."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        looks = ""
        try:
            data.decode("cp950")
            looks = " (it looks like Big5/CP950)"
        except UnicodeDecodeError:
            pass
        raise BadRequest(f"{where}: byte {exc.start} is not UTF-8{looks}; save the CSV as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    if column not in header:
        raise BadRequest(f"{where}: no column {column!r}; the header has {', '.join(header) or '(nothing)'}")
    return header, list(reader)


def geocode_rows(conn, rows: list[dict], column: str, options: Options) -> Iterator[tuple[dict, str]]:
    """Each input row with the result columns added, in input order; and its match type."""
    for start in range(0, len(rows), BATCH):
        chunk = rows[start:start + BATCH]
        parsed: list[Parts | None] = []
        errors: list[str | None] = []
        for row in chunk:
            try:
                parsed.append(parse(row.get(column)))
                errors.append(None)
            except NotAnAddress as exc:
                parsed.append(None)
                errors.append(str(exc))
        good = [(i, p) for i, p in enumerate(parsed) if p is not None]
        found = match(conn, [p for _, p in good], options) if good else []
        by_row = {i: cands for (i, _), cands in zip(good, found)}
        for i, row in enumerate(chunk):
            cands = by_row.get(i, [])
            out = dict(row)
            if errors[i]:
                kind = "error"
                out.update({c: "" for c in RESULT_COLUMNS}, match_type=kind, error=errors[i])
            elif not cands:
                kind = "none"
                out.update({c: "" for c in RESULT_COLUMNS}, match_type=kind,
                           error="no address or road of that name in the address layer")
            else:
                c = cands[0]
                kind = c.match_type
                out.update(match_type=kind, score=round(c.score, 1), ambiguous="true" if c.ambiguous else "",
                           matched_address=c.parts.get("full_address") or "",
                           county=c.parts.get("county") or "", district=c.parts.get("district") or "",
                           village=c.parts.get("village") or "", neighborhood=c.parts.get("neighborhood") or "",
                           x=c.x, y=c.y, error="")
            yield out, kind


def write_csv(header: list[str], results: Iterable[tuple[dict, str]], counts: Counter) -> Iterator[str]:
    """The CSV text, a chunk of rows at a time: the server streams each chunk from a worker thread,
    and one thread hop a row cost more than geocoding the row."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header + [c for c in RESULT_COLUMNS if c not in header],
                            lineterminator="\r\n")
    writer.writeheader()
    for n, (row, kind) in enumerate(results, 1):
        counts[kind] += 1
        writer.writerow(row)
        if n % WRITE_ROWS == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def reverse(conn, x: float, y: float, srid: int, options: Options, live: set[str]) -> dict:
    point = sql.SQL("ST_Transform(ST_SetSRID(ST_MakePoint(%s, %s), %s), 3826)")
    args = [x, y, srid]
    out: dict = {"point": {"x": x, "y": y, "srid": srid}}
    if "addresses" in live:
        xy = xy_columns(options)
        row = conn.execute(sql.SQL(
            "SELECT a.full_address, a.county, a.district, a.village, a.neighborhood, a.road, a.section, a.lane, "
            "a.alley, a.number, ST_Distance(a.geom, {p}), {xy} FROM live.addresses a "
            "WHERE a.floor IS NULL ORDER BY a.geom <-> {p} LIMIT 1").format(p=point, xy=xy), args + args).fetchone()
        if row:
            keys = ["county", "district", "village", "neighborhood", "road", "section", "lane", "alley", "number"]
            out["nearest_address"] = {"matched_address": row[0], "parts": dict(zip(keys, row[1:10])),
                                      "distance_m": round(row[10], 2), "x": row[11], "y": row[12]}
            out["village"] = row[3]
    if "districts" in live:
        row = conn.execute(sql.SQL("SELECT district_code, name FROM live.districts d WHERE ST_Contains(d.geom, {}) "
                                   "LIMIT 1").format(point), args).fetchone()
        out["district"] = {"code": row[0], "name": row[1]} if row else None
    if "zoning" in live:
        row = conn.execute(sql.SQL(
            "SELECT zone_name, zone_code, zone_category, coverage_ratio, floor_area_ratio, plan_area_name "
            "FROM live.zoning z WHERE ST_Contains(z.geom, {}) LIMIT 1").format(point), args).fetchone()
        out["zoning"] = dict(zip(["使用分區", "分區代碼", "類別", "建蔽率", "容積率", "計畫區"], row)) if row else None
    return out
