"""Vector sources of the sample city, each in the format agencies really deliver.

- roads: Shapefile, Big5 DBF with a ``.cpg`` saying ``950``, numbers stored as text;
- buildings: Shapefile, Big5 DBF flagged only by the DBF language-driver byte (0x78), no ``.cpg``;
- districts: Shapefile, UTF-8 with a ``.cpg`` (as NLSC publishes boundaries);
- zoning: GeoJSON with the legacy ``crs`` member and DBF-truncated field names;
- topo: a GeoPackage of 1/1000 topographic features by five-digit feature code;
- landmarks: CSV with TWD97 X/Y columns.
"""

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import shapely
from pyogrio import write_arrow

from geocloud.address.taichung import DISTRICTS
from geocloud.sample.city import CITY_HALL, EXTENT, GRID, SECTIONS, City

BIG5_GAPS = str.maketrans({"磘": "■"})  # characters Big5 lacks arrive as ■ in agency files
BUILDINGS_PER_SCALE = 2_000
CHUNK = 100_000


def _wkb(geoms) -> pa.Array:
    return pa.array(shapely.to_wkb(geoms), pa.binary())


def _write(path: Path, columns: dict, geoms, geometry_type: str, *, encoding: str | None = None,
           append: bool = False) -> None:
    table = pa.table({**columns, "geometry": _wkb(geoms)})
    kwargs = {"encoding": encoding} if encoding else {}
    write_arrow(table, path, driver=None, geometry_type=geometry_type, crs="EPSG:3826",
                geometry_name="geometry", append=append, **kwargs)


def roads(path: Path, city: City) -> int:
    ids, names, classes, widths, dists, geoms = [], [], [], [], [], []
    for r_i, road in enumerate(city.roads):
        n_links = int(road.length // GRID)
        for k in range(n_links):
            a0, a1 = k * GRID, (k + 1) * GRID
            (x0, x1), (y0, y1) = road.point(np.array([a0, a1]), np.zeros(2))
            if not (EXTENT[0] <= min(x0, x1) and max(x0, x1) <= EXTENT[2]
                    and EXTENT[1] <= min(y0, y1) and max(y0, y1) <= EXTENT[3]):
                continue
            sec = int(road.section(np.array([a0]))[0])
            name = f"{road.name}{SECTIONS[sec]}段" if road.sectioned else road.name
            ids.append(f"TC{r_i:03d}{k:04d}")
            names.append(name.translate(BIG5_GAPS))
            classes.append("主要道路" if road.sectioned else "次要道路")
            widths.append("40" if r_i == 0 else ("30" if road.sectioned else "15"))
            dists.append(DISTRICTS[int(city.district_of(np.array([x0]), np.array([y0]))[0])][0])
            geoms.append(shapely.multilinestrings([shapely.linestrings([(x0, y0), (x1, y1)])]))
    _write(path, {"LinkID": pa.array(ids), "RoadName": pa.array(names), "RoadClass": pa.array(classes),
                  "Width": pa.array(widths), "DistCode": pa.array(dists)},
           np.array(geoms), "MultiLineString", encoding="cp950")
    path.with_suffix(".cpg").write_text("950", encoding="ascii")
    return len(ids)


def buildings(path: Path, city: City, count: int) -> int:
    """``count`` building outlines in rows behind the road frontage, written in bounded chunks."""
    rng = np.random.default_rng(city.seed + 21)
    roads_ = city.roads
    per_road = [int(r.length // 14.0) for r in roads_]
    slots_per_road = np.array(per_road) * 2 * 24  # positions x sides x rows
    total = int(slots_per_road.sum())
    if count > total:
        raise ValueError(f"at most {total} buildings fit the sample city")
    chosen = np.sort(rng.choice(total, size=count, replace=False))
    bounds = np.concatenate([[0], np.cumsum(slots_per_road)])
    written = 0
    structures = np.array(["鋼筋混凝土造", "加強磚造", "鋼骨造", "木造", "鋼骨鋼筋混凝土造"])
    usages = np.array(["住宅", "商業", "工業", "公共", "住商混合"])
    for start in range(0, count, CHUNK):
        ids = chosen[start:start + CHUNK]
        road_of = np.searchsorted(bounds, ids, side="right") - 1
        local = ids - bounds[road_of]
        pos, rest = local // 48, local % 48
        side, row = rest // 24, rest % 24
        cx, cy = np.empty(len(ids)), np.empty(len(ids))
        dxs, dys = np.empty(len(ids)), np.empty(len(ids))
        for r_i in np.unique(road_of):
            m = road_of == r_i
            road = roads_[r_i]
            cx[m], cy[m] = road.point(pos[m] * 14.0 + 7.0, (28.0 + row[m] * 16.0) * (1 - 2 * side[m]))
            dxs[m], dys[m] = road.direction
        w = rng.uniform(6.0, 12.0, len(ids))
        h = rng.uniform(6.0, 13.0, len(ids))
        corners = np.array([(-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1)], dtype=float)
        px = cx[:, None] + corners[:, 0] * w[:, None] / 2 * dxs[:, None] - corners[:, 1] * h[:, None] / 2 * dys[:, None]
        py = cy[:, None] + corners[:, 0] * w[:, None] / 2 * dys[:, None] + corners[:, 1] * h[:, None] / 2 * dxs[:, None]
        rings = shapely.linearrings(np.stack([px, py], axis=-1))
        geoms = shapely.multipolygons(shapely.polygons(rings)[:, None].tolist())
        district = city.district_of(cx, cy)
        floors = np.maximum(1, rng.poisson(3.5, len(ids)))
        _write(path, {
            "BLDG_ID": pa.array([f"B{i:08d}" for i in ids]),
            "樓層數": pa.array(floors.astype(np.int32)),
            "構造別": pa.array(structures[rng.integers(0, len(structures), len(ids))]),
            "用途": pa.array(usages[rng.integers(0, len(usages), len(ids))]),
            "行政區": pa.array(np.array([d[0] for d in DISTRICTS])[district]),
        }, geoms, "MultiPolygon", encoding="cp950", append=start > 0)
        written += len(ids)
    path.with_suffix(".cpg").unlink(missing_ok=True)
    with path.with_suffix(".dbf").open("r+b") as dbf:  # Big5 flagged only by the LDID byte
        dbf.seek(29)
        dbf.write(bytes([0x78]))
    return written


def districts(path: Path, city: City) -> int:
    geoms = shapely.multipolygons([[p] for p in city.district_polygons])
    _write(path, {"TOWNCODE": pa.array([d[0] for d in DISTRICTS]),
                  "TOWNNAME": pa.array([d[1] for d in DISTRICTS]),
                  "TOWNENG": pa.array([d[2] for d in DISTRICTS]),
                  "COUNTYNAME": pa.array(["臺中市"] * len(DISTRICTS))},
           geoms, "MultiPolygon", encoding="UTF-8")
    return len(DISTRICTS)


# (code, zone name, short name, coverage, floor-area ratio, colour): real codes of the national table.
ZONES = [
    ("A02120", "第二種商業區", "商二", "80", "320", "255,0,63"),
    ("A01130", "第三種住宅區", "住三", "60", "200", "255,255,0"),
    ("A01110", "第一種住宅區", "住一", "55", "165", "255,255,0"),
    ("A03220", "乙種工業區", "乙工", "60", "210", "127,63,0"),
    ("C01000", "公園用地", "公", None, None, "0,255,0"),
    ("C26700", "學校用地", "文小", "50", "150", "191,127,255"),
    ("C23000", "機關用地", "機", "50", "250", "0,127,255"),
    ("C10510", "捷運系統用地", "捷", "不予規定", "不予規定", "183,183,183"),
    ("A08000", "農業區", "農", None, None, "127,255,0"),
]


def zoning(path: Path, city: City) -> int:
    rng = np.random.default_rng(city.seed + 31)
    features = []
    x0, y0 = EXTENT[0] + 150.0, EXTENT[1] + 150.0
    for i in range(3, 47):
        for j in range(3, 47):
            bx, by = x0 + i * GRID, y0 + j * GRID
            dist = np.hypot(bx + GRID / 2 - CITY_HALL[0], by + GRID / 2 - CITY_HALL[1])
            if dist > 9_000:
                continue
            block = shapely.box(bx + 15, by + 15, bx + GRID - 15, by + GRID - 15)
            halves = [block] if rng.random() < 0.6 else [
                shapely.box(bx + 15, by + 15, bx + GRID / 2, by + GRID - 15),
                shapely.box(bx + GRID / 2, by + 15, bx + GRID - 15, by + GRID - 15)]
            for part in halves:
                if dist < 2_000:
                    z = ZONES[0] if rng.random() < 0.6 else ZONES[rng.integers(4, 8)]
                elif dist < 7_000:
                    z = ZONES[rng.choice([1, 1, 1, 2, 3, 4, 5, 6, 7])]
                else:
                    z = ZONES[rng.choice([8, 8, 2, 4])]
                code, name, short, cov, far, colour = z
                features.append({"type": "Feature", "properties": {
                    "OBJECTID": 100_000 + len(features), "計畫區": "B0103", "計畫_1": "臺中市都市計畫主要計畫",
                    "使用分": name, "分區簡": short, "建蔽率": cov, "容積率": far, "分區代": code,
                    "分區類": name, "COLOR1": colour, "Shape_Area": round(part.area, 4)},
                    "geometry": {"type": "MultiPolygon",
                                 "coordinates": [[[list(c) for c in part.exterior.coords]]]}})
    doc = {"type": "FeatureCollection", "name": "zoning",
           "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3826"}},
           "features": features}
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return len(features)


LANDMARKS = [
    ("臺中市政府", "機關", "臺中市西屯區臺灣大道三段99號", CITY_HALL),
    ("臺中車站", "車站", "臺中市中區臺灣大道一段1號", (217020.0, 2668780.0)),
    ("國立自然科學博物館", "博物館", "臺中市北區館前路1號", (215770.0, 2671130.0)),
    ("臺中國家歌劇院", "文化設施", "臺中市西屯區惠來路二段101號", (214080.0, 2673530.0)),
    ("逢甲大學", "學校", "臺中市西屯區文華路100號", (212000.0, 2675450.0)),
    ("秋紅谷廣場", "公園", "臺中市西屯區朝富路", (213750.0, 2673800.0)),
    ("臺中榮民總醫院", "醫院", "臺中市西屯區臺灣大道四段1650號", (210720.0, 2675100.0)),
    ("中山公園", "公園", "臺中市北區公園路37號之1", (217090.0, 2669970.0)),
]


def landmarks(path: Path, city: City, extra: int) -> int:
    rng = np.random.default_rng(city.seed + 41)
    rows = [(f"LM{i:05d}", n, c, a, x, y) for i, (n, c, a, (x, y)) in enumerate(LANDMARKS, 1)]
    kinds = [("國民小學", "學校"), ("公園", "公園"), ("派出所", "機關"), ("圖書館", "文化設施"), ("診所", "醫院")]
    for k in range(extra):
        x, y = rng.uniform(EXTENT[0] + 500, EXTENT[2] - 500), rng.uniform(EXTENT[1] + 500, EXTENT[3] - 500)
        d = DISTRICTS[int(city.district_of(np.array([x]), np.array([y]))[0])]
        suffix, cat = kinds[k % len(kinds)]
        rows.append((f"LM{len(rows) + 1:05d}", f"{d[1].removesuffix('區')}第{k // len(kinds) + 1}{suffix}",
                     cat, f"臺中市{d[1]}", round(x, 3), round(y, 3)))
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        out = csv.writer(fh, lineterminator="\r\n")
        out.writerow(["編號", "名稱", "類別", "地址", "TWD97_X", "TWD97_Y"])
        out.writerows(rows)
    return len(rows)


# Hills as cones: (x, y, peak elevation m, radius m). East Taichung rises toward the mountains.
HILLS = [(226_000.0, 2_676_000.0, 420.0, 6_000.0), (223_000.0, 2_684_000.0, 300.0, 4_000.0),
         (205_500.0, 2_667_000.0, 180.0, 3_500.0)]
TOPO_CODES = {"spot_height": "98100", "contour": "98210", "index_contour": "98220", "river": "95111",
              "lake": "95211", "place_name": "99100", "road_name": "99200", "unknown": "99999"}


def _sheet(x, y) -> str:
    return f"9419{int((x - EXTENT[0]) // 3000):02d}{int((y - EXTENT[1]) // 3000):02d}"


def _elevation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    z = np.full(np.shape(x), 60.0)
    for hx, hy, peak, radius in HILLS:
        z = np.maximum(z, peak * (1 - np.hypot(x - hx, y - hy) / radius))
    return z


def topo(path: Path, city: City) -> dict[str, int]:
    rng = np.random.default_rng(city.seed + 51)
    counts = {}
    # contours: circles of a cone at every 20 m (index contour every 100 m)
    ids, codes, elevs, sheets, geoms = [], [], [], [], []
    for h_i, (hx, hy, peak, radius) in enumerate(HILLS):
        for level in range(80, int(peak), 20):
            r = radius * (1 - level / peak)
            ring = shapely.intersection(shapely.Point(hx, hy).buffer(r, 32).exterior, shapely.box(*EXTENT))
            if ring.is_empty:
                continue
            ids.append(f"C{h_i}{level:04d}")
            codes.append(TOPO_CODES["index_contour" if level % 100 == 0 else "contour"])
            elevs.append(float(level))
            sheets.append(_sheet(hx, hy))
            geoms.append(shapely.multilinestrings(shapely.get_parts(shapely.line_merge(ring))))
    _write_topo(path, "contours", ids, codes, elevs, None, sheets, geoms, "MultiLineString")
    counts["contours"] = len(ids)
    # water: two rivers (buffered sinuous lines) and a few ponds
    ids, codes, names, sheets, geoms = [], [], [], [], []
    for k, (name, x_base) in enumerate([("筏子溪", 209_500.0), ("旱溪", 219_500.0)]):
        ys = np.linspace(EXTENT[1], EXTENT[3], 120)
        xs = x_base + 300 * np.sin(ys / 1700.0 + k)
        river = shapely.linestrings(np.column_stack([xs, ys])).buffer(25.0 + 10 * k)
        ids.append(f"W{k:04d}"), codes.append(TOPO_CODES["river"]), names.append(name)
        sheets.append(_sheet(x_base, CITY_HALL[1])), geoms.append(shapely.multipolygons([river]))
    for k in range(6):
        x, y = rng.uniform(EXTENT[0] + 1000, EXTENT[2] - 1000), rng.uniform(EXTENT[1] + 1000, EXTENT[3] - 1000)
        ids.append(f"W{k + 10:04d}"), codes.append(TOPO_CODES["lake"]), names.append(f"埤塘{k + 1}")
        sheets.append(_sheet(x, y)), geoms.append(shapely.multipolygons([shapely.Point(x, y).buffer(60.0, 16)]))
    _write_topo(path, "water", ids, codes, None, names, sheets, geoms, "MultiPolygon")
    counts["water"] = len(ids)
    # points: spot heights, annotation, and a few features whose code the contract does not list
    xs = rng.uniform(EXTENT[0] + 200, EXTENT[2] - 200, 400)
    ys = rng.uniform(EXTENT[1] + 200, EXTENT[3] - 200, 400)
    ids = [f"P{i:05d}" for i in range(400)]
    codes = [TOPO_CODES["spot_height"]] * 400
    elevs = [round(float(z), 2) for z in _elevation(xs, ys)]
    texts = [None] * 400
    for i, (code, name, en) in enumerate(DISTRICTS):
        poly = city.district_polygons[i]
        c = poly.representative_point()
        xs, ys = np.append(xs, c.x), np.append(ys, c.y)
        ids.append(f"A{i:05d}"), codes.append(TOPO_CODES["place_name"]), elevs.append(None), texts.append(name)
    for j, road in enumerate(city.roads[:20]):
        px, py = road.point(np.array([3_000.0]), np.array([0.0]))
        xs, ys = np.append(xs, px), np.append(ys, py)
        ids.append(f"R{j:05d}"), codes.append(TOPO_CODES["road_name"]), elevs.append(None), texts.append(road.name)
    for k in range(3):
        xs, ys = np.append(xs, CITY_HALL[0] + 100 * k), np.append(ys, CITY_HALL[1] - 300)
        ids.append(f"U{k:05d}"), codes.append(TOPO_CODES["unknown"]), elevs.append(None), texts.append(None)
    sheets = [_sheet(x, y) for x, y in zip(xs, ys)]
    _write_topo(path, "points", ids, codes, elevs, None, sheets, shapely.points(xs, ys), "Point", texts=texts)
    counts["points"] = len(ids)
    return counts


def _write_topo(path, layer, ids, codes, elevs, names, sheets, geoms, gtype, texts=None):
    cols = {"FID_CODE": pa.array(ids), "FCODE": pa.array(codes, pa.string())}
    if elevs is not None:
        cols["ELEV"] = pa.array(elevs, pa.float64())
    if names is not None:
        cols["NAME"] = pa.array(names)
    if texts is not None:
        cols["TEXT"] = pa.array(texts, pa.string())
    cols["SHEET"] = pa.array(sheets)
    table = pa.table({**cols, "geometry": _wkb(np.asarray(geoms, dtype=object))})
    write_arrow(table, path, layer=layer, driver="GPKG", geometry_type=gtype, crs="EPSG:3826",
                geometry_name="geometry", append=path.exists())


def inspection_sites(path: Path, city: City, count: int) -> int:
    """Premises under public-safety inspection (a restricted layer): CSV with TWD97 X/Y."""
    rng = np.random.default_rng(city.seed + 71)
    kinds = ["KTV", "旅館", "醫院", "百貨公司", "補習班", "餐廳", "網咖", "護理之家"]
    results = ["合格", "限期改善", "不合格"]
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        out = csv.writer(fh, lineterminator="\r\n")
        out.writerow(["編號", "場所名稱", "類別", "地址", "稽查日期", "結果", "X", "Y"])
        for i in range(count):
            x, y = CITY_HALL[0] + rng.normal(0, 2500), CITY_HALL[1] + rng.normal(0, 2500)
            d = DISTRICTS[int(city.district_of(np.array([x]), np.array([y]))[0])]
            kind = kinds[i % len(kinds)]
            out.writerow([f"PS{i + 1:05d}", f"{d[1].removesuffix('區')}{kind}{i + 1}", kind, f"臺中市{d[1]}",
                          f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}", results[int(rng.integers(0, 3))],
                          f"{x:.2f}", f"{y:.2f}"])
    return count


def road_works(path: Path, city: City, count: int) -> int:
    """Road works permits (an internal layer): CSV with TWD97 X/Y on the road grid."""
    rng = np.random.default_rng(city.seed + 81)
    contractors = ["中興營造", "大都會工程", "臺中水電", "中華電信", "欣林天然氣"]
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        out = csv.writer(fh, lineterminator="\r\n")
        out.writerow(["許可編號", "道路", "施工單位", "開工日", "完工日", "X", "Y"])
        for i in range(count):
            road = city.roads[int(rng.integers(0, len(city.roads)))]
            px, py = road.point(np.array([rng.uniform(2_000, road.length - 2_000)]), np.array([0.0]))
            out.writerow([f"RW{i + 1:05d}", road.name, contractors[i % len(contractors)],
                          f"2026-{1 + i % 12:02d}-01", f"2026-{1 + i % 12:02d}-28", f"{px[0]:.2f}", f"{py[0]:.2f}"])
    return count
