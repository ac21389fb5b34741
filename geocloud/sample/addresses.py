"""門牌 address points in Taichung's monthly "GIS門牌號碼" CSV format.

House numbers follow the road: odd on the left, even on the right, 6 m apart, restarting at each
段; lanes (巷) branch off at a house number and carry their own numbers. A small share of rows
carries the quirks of the real files (full-width digits, 之-numbers, floors, 鄰 typed into the
村里 column, 段段 typos, bopomofo ㄧ), and a few fixed rows reproduce real records.
"""

import csv
from pathlib import Path

import numpy as np
from pyproj import Transformer

from geocloud.address.taichung import DISTRICTS
from geocloud.sample.city import SECTIONS, City

HEADER = ["省市縣市代碼", "鄉鎮市區代碼", "村里", "鄰", "街_路段", "地區", "巷", "弄", "號",
          "TWD97橫坐標", "TWD97縱坐標", "WGS84經度", "WGS84緯度"]
SPACING = 6.0
FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
FLOORS = ["二樓", "三樓", "四樓", "五樓", "六樓", "七樓", "八樓", "九樓", "十樓", "十二樓"]

# Rows as they appear in the real file (see shared/reference/taiwan.md), placed in the sample city.
# (district code, 村里, 鄰, 街_路段, 巷, 弄, 號, x, y)
FIXED_ROWS = [
    ("6600600", "惠來里", "045", "臺灣大道三段", "", "", "９９號", 214160.2912, 2673008.3139),
    ("6600600", "惠來里", "012", "文心路二段", "", "", "２之３之２號", 214620.4100, 2673571.2200),
    ("6600600", "惠來里", "013", "市政路", "", "", "50號之7", 214410.1200, 2673452.9800),
    ("6600600", "何厝里", "011", "中興路", "67巷", "28弄", "21號四樓之5", 213802.3428, 2674046.3807),
    ("6600600", "何厝里", "020", "惠中路一段", "", "", "４９６一５號", 213355.5000, 2672650.5000),
    ("6600600", "福安里", "007", "瓦磘路", "", "", "１２號", 212910.0000, 2673210.0000),
]

FIXED_KEYS = {("臺灣大道三段", "", "", 99), ("文心路二段", "", "", 2), ("市政路", "", "", 50),
              ("中興路", "67巷", "28弄", 21), ("惠中路一段", "", "", 496), ("瓦磘路", "", "", 12)}


def _number_text(number: int, subs: tuple[int, ...], floor: str, rng: np.random.Generator) -> str:
    """The 號 column: full-width digits mostly, 之-numbers in either order, floors kept."""
    main = str(number) + "".join(f"之{s}" for s in subs)
    text = f"{main}號"
    if subs and rng.random() < 0.3:  # "50號之7" is how many clerks type 50之7號
        text = f"{number}號" + "".join(f"之{s}" for s in subs)
    if floor:
        text += floor
    return text.translate(FULLWIDTH) if rng.random() < 0.8 else text


def write(path: Path, city: City, count: int) -> int:
    """Write ``count`` (about) address rows to ``path``; return the number written."""
    rng = np.random.default_rng(city.seed + 11)
    roads = city.roads
    lengths = np.array([r.length for r in roads])
    base = max(count - len(FIXED_ROWS), 0)
    target = int(base / 1.2) + 1  # distinct locations; floors add about 20 % more rows
    n = int(target * 1.6) + 10     # over-draw, then keep the first `target` distinct identities
    road_idx = rng.choice(len(roads), size=n, p=lengths / lengths.sum())
    side = rng.integers(0, 2, n)
    slot = (rng.random(n) * (lengths[road_idx] - 50.0) // SPACING).astype(np.int64) + 2
    in_lane = rng.random(n) < 0.6
    lane_pos = rng.integers(0, 40, n)
    lane_side = rng.integers(0, 2, n)
    ident = np.stack([road_idx, side, slot, np.where(in_lane, lane_pos * 2 + lane_side + 1, 0)], axis=1)
    _, first = np.unique(ident, axis=0, return_index=True)
    keep = np.sort(first)[:target]
    road_idx, side, slot, in_lane, lane_pos, lane_side = (
        a[keep] for a in (road_idx, side, slot, in_lane, lane_pos, lane_side))

    xs, ys = np.empty(len(keep)), np.empty(len(keep))
    for r_i, road in enumerate(roads):
        m = road_idx == r_i
        along = slot[m] * SPACING + 3.0
        lane_along = np.where(in_lane[m], (lane_side[m] * 2 - 1) * 4.0, 0.0)
        offset = np.where(in_lane[m], 20.0 + lane_pos[m] * SPACING, 12.0) * (1 - 2 * side[m])
        xs[m], ys[m] = road.point(along + lane_along, offset)
    inside = (xs > 200_050) & (xs < 229_950) & (ys > 2_660_050) & (ys < 2_689_950)
    district = city.district_of(xs, ys)
    village = city.village_of(district, xs, ys)
    to_wgs84 = Transformer.from_crs(3826, 4326, always_xy=True)
    lon, lat = to_wgs84.transform(xs, ys)

    written = 0
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        out = csv.writer(fh, lineterminator="\r\n")
        out.writerow(HEADER)
        for code, vil, nb, road, lane, alley, number, x, y in FIXED_ROWS:
            lo, la = to_wgs84.transform(x, y)
            out.writerow(["66", code, vil, nb, road, "", lane, alley, number,
                          f"{x:.4f}", f"{y:.4f}", f"{lo:.9f}", f"{la:.10f}"])
            written += 1
        for i in np.flatnonzero(inside):
            road = roads[road_idx[i]]
            along = slot[i] * SPACING
            sec = int(road.section(np.array([along]))[0])
            within = int(along - sec * 6000.0) // int(SPACING)
            house = 2 * within + 1 + int(side[i])
            if not road.sectioned:
                sec, within = 0, int(along) // int(SPACING)
                house = 2 * within + 1 + int(side[i])
            road_text = f"{road.name}{SECTIONS[sec]}段" if road.sectioned else road.name
            lane = alley = ""
            if in_lane[i]:
                lane, house = f"{house}巷", 2 * int(lane_pos[i]) + 1 + int(lane_side[i])
                if lane_pos[i] >= 20:
                    alley = f"{(int(lane_pos[i]) // 5) * 2 + 1}弄"
            if (road_text, lane, alley, house) in FIXED_KEYS:
                continue
            subs: tuple[int, ...] = ()
            roll = rng.random()
            if roll < 0.08:
                subs = (int(rng.integers(1, 9)),)
            elif roll < 0.10:
                subs = (int(rng.integers(1, 9)), int(rng.integers(1, 5)))
            vil, nb = str(village[i]), f"{1 + (int(xs[i] // 200) * 13 + int(ys[i] // 200)) % 40:03d}"
            quirk = rng.random()
            if quirk < 0.002:
                vil, nb = vil + nb, ""                      # 鄰 typed into the 村里 column
            elif quirk < 0.003 and "段" in road_text:
                road_text = road_text.replace("段", "段段")  # a doubled 段
            elif quirk < 0.004 and "一段" in road_text:
                road_text = road_text.replace("一段", "ㄧ段")  # bopomofo ㄧ for 一
            code = DISTRICTS[district[i]][0]
            floors = [""] + (list(rng.choice(FLOORS, size=int(rng.integers(1, 4)), replace=False))
                             if rng.random() < 0.1 else [])
            if written + len(floors) > count:
                floors = floors[:max(count - written, 0)]
            for floor in floors:
                out.writerow(["66", code, vil, nb, road_text, "", lane, alley,
                              _number_text(house, subs, floor, rng),
                              f"{xs[i]:.4f}", f"{ys[i]:.4f}", f"{lon[i]:.9f}", f"{lat[i]:.10f}"])
                written += 1
    return written
