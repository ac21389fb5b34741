"""Named transforms a pipeline can apply to its mapped fields (``outputs[].transform``).

- ``addresses``: parse and normalize 門牌 parts to the canonical form, keeping the raw text;
- ``zoning``: check 分區代碼 against the national code table and add type, category and colour.
"""

import csv
from functools import lru_cache

import numpy as np
import pyarrow as pa

from geocloud import address
from geocloud.address.taichung import COUNTY, DISTRICT_NAME
from geocloud.etl.quality import Quality

def _texts(arr: pa.Array) -> list[str]:
    if not pa.types.is_string(arr.type):
        arr = arr.cast(pa.string())
    return ["" if v is None else v for v in arr.to_pylist()]


def addresses(cols: dict[str, pa.Array], rows: np.ndarray, quality: Quality, reject: np.ndarray) -> dict:
    n = len(rows)
    dist, vil, nb, road, area, lane, alley, num = (
        _texts(cols[k]) for k in ("district_code", "village", "neighborhood", "road", "area", "lane", "alley",
                                  "number"))
    out = {k: [None] * n for k in ("address_key", "full_address", "raw_address", "county", "district_code",
                                   "district", "village", "neighborhood", "road", "section", "area", "lane",
                                   "alley", "number", "number_value", "floor")}
    unknown_district, unparsed = [], []
    for i in range(n):
        code = dist[i].strip()
        district = DISTRICT_NAME.get(code)
        if district is None:
            unknown_district.append(i)
            continue
        village, neighborhood = address.village_neighborhood(vil[i], nb[i])
        road_name, section = address.road_section(road[i])
        lane_ = address.lane_alley(lane[i], "巷")
        alley_ = address.lane_alley(alley[i], "弄")
        number, floor = address.number_floor(num[i])
        if not number or not number[0].isdigit():
            unparsed.append(i)
        area_ = address.clean(area[i])
        full = address.full_address(COUNTY, district, road_name, section, lane_, alley_, number, area_)
        raw = "".join(p for p in (road[i], area[i], lane[i], alley[i], num[i]) if p)
        for key, value in (("address_key", full + floor), ("full_address", full), ("raw_address", raw),
                           ("county", COUNTY), ("district_code", code), ("district", district),
                           ("village", village or None), ("neighborhood", neighborhood),
                           ("road", road_name or None), ("section", section or None), ("area", area_ or None),
                           ("lane", lane_ or None), ("alley", alley_ or None), ("number", number or None),
                           ("number_value", address.number_value(number)), ("floor", floor or None)):
            out[key][i] = value
    bad = np.array(unknown_district, dtype=int)
    quality.note("error", "鄉鎮市區代碼 is not a Taichung district code (6600100-6602900); row rejected", rows[bad])
    reject[bad] = True
    quality.note("warning", "house number (號) could not be parsed; kept as written", rows[np.array(unparsed, dtype=int)])
    ints = {"neighborhood", "number_value"}
    return {k: pa.array(v, pa.int32() if k in ints else pa.string()) for k, v in out.items()}


@lru_cache
def category_table(path: str) -> dict[str, tuple[str, str, str]]:
    """Zone category (type letter + 2 digits) -> (type, category, standard colour)."""
    with open(path, encoding="utf-8") as fh:
        return {r["category_code"]: (r["type_name"], r["category_name"], f"{r['r']},{r['g']},{r['b']}")
                for r in csv.DictReader(fh)}


@lru_cache
def full_code_table(path: str) -> dict[str, str]:
    """分區代碼 -> 次類別名稱 from a national code table (e.g. landcode.csv, UTF-8 with BOM)."""
    with open(path, encoding="utf-8-sig") as fh:
        return {r["分區代碼"]: r.get("次類別名稱", "") for r in csv.DictReader(fh)}


def zoning(cols: dict[str, pa.Array], rows: np.ndarray, quality: Quality, reject: np.ndarray, *,
           categories: str, code_table: str | None = None) -> dict:
    cats = category_table(categories)
    full = full_code_table(code_table) if code_table else None
    codes = _texts(cols["zone_code"])
    colours = _texts(cols["color"]) if "color" in cols else [""] * len(codes)
    types, categories, out_colours, bad = [], [], [], []
    for i, code in enumerate(codes):
        code = code.strip().upper()
        cat = cats.get(code[:3]) if len(code) == 6 and code[1:].isdigit() else None
        if cat is None or (full is not None and code not in full):
            bad.append(i)
            types.append(None), categories.append(None), out_colours.append(None)
            continue
        types.append(cat[0]), categories.append(cat[1])
        out_colours.append(colours[i].strip() or cat[2])
    bad_idx = np.array(bad, dtype=int)
    samples = ", ".join(sorted({codes[i] or "(empty)" for i in bad[:50]})[:5])
    quality.note("error", f"分區代碼 not in the national zoning code table ({samples}); row rejected", rows[bad_idx])
    reject[bad_idx] = True
    out = dict(cols)
    out["zone_type"], out["zone_category"] = pa.array(types, pa.string()), pa.array(categories, pa.string())
    out["color"] = pa.array(out_colours, pa.string())
    return out


TRANSFORMS = {"addresses": addresses, "zoning": zoning}
