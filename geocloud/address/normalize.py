"""Normalize Taiwanese 門牌 addresses to one canonical form.

Canonical form (what TGOS and the city's own data use): 臺 not 台; 段 in Chinese numerals (三段);
巷, 弄 and 號 in half-width Arabic digits; 之 for sub-numbers (12-3號 = 12之3號 = 12號之3);
floors as ``N樓`` / ``地下N樓`` kept apart from the number, so that point matching can drop them.
The rules are those of ``shared/reference/taiwan.md``; the raw text is always kept by callers.
"""

import re
import unicodedata

CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "兩": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
             "八": 8, "九": 9}
CN_NUMERAL = "一二三四五六七八九"
OLD_ROAD_NAMES = {"臺中港路": "臺灣大道", "中港路": "臺灣大道"}
# 臺中縣 towns became 臺中市 districts in 2010: 豐原市 -> 豐原區, 大甲鎮 -> 大甲區, 大安鄉 -> 大安區
_OLD_COUNTY = re.compile(r"臺中縣(\S{1,3}?)[市鎮鄉](?=\S)")
_DASH_BETWEEN_DIGITS = re.compile(r"(?<=\d)[-－―‐一ㄧ~～](?=\d)")
_CN_NUMBER = re.compile(r"[零〇一二兩三四五六七八九十百]+")


def cn_to_int(text: str) -> int | None:
    """Chinese numerals to an integer (一 -> 1, 十六 -> 16, 二十 -> 20, 一百零五 -> 105)."""
    if not text or any(c not in CN_DIGITS and c not in "十百" for c in text):
        return None
    total, current = 0, 0
    for char in text:
        if char == "百":
            total += (current or 1) * 100
            current = 0
        elif char == "十":
            total += (current or 1) * 10
            current = 0
        else:
            current = CN_DIGITS[char]
    return total + current


def int_to_cn(value: int) -> str:
    """1..99 in Chinese numerals as used for 段 (3 -> 三, 10 -> 十, 12 -> 十二)."""
    if value < 10:
        return CN_NUMERAL[value - 1] if value > 0 else "零"
    tens, ones = divmod(value, 10)
    return ("" if tens == 1 else CN_NUMERAL[tens - 1]) + "十" + (CN_NUMERAL[ones - 1] if ones else "")


def clean(text: str | None) -> str:
    """NFKC (full-width -> half-width), 台 -> 臺, bopomofo ㄧ -> 一, no spaces."""
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", str(text)).replace("台", "臺").replace("ㄧ", "一")
    return re.sub(r"\s+", "", text)


def county_district(text: str) -> str:
    """Old county names: 臺中縣豐原市 -> 臺中市豐原區."""
    return _OLD_COUNTY.sub(lambda m: f"臺中市{m.group(1)}區", text)


def road_section(text: str | None) -> tuple[str, str]:
    """Split ``街_路段`` into road and section: 臺灣大道3段 -> (臺灣大道, 三)."""
    text = clean(text).replace("段段", "段")
    section = ""
    m = re.match(r"^(.+?)(\d{1,2}|[一二三四五六七八九十]{1,3})段$", text)
    if m:
        text, raw = m.group(1), m.group(2)
        n = int(raw) if raw.isdigit() else cn_to_int(raw)
        section = int_to_cn(n) if n else raw
    for old, new in OLD_ROAD_NAMES.items():
        if text == old:
            text = new
    return text, section


def lane_alley(text: str | None, unit: str) -> str:
    """巷 or 弄 as half-width digits (十六巷 -> 16); named lanes (便行巷) stay as they are."""
    text = clean(text)
    if not text:
        return ""
    body = text.removesuffix(unit)
    if body.isdigit():
        return str(int(body))
    n = cn_to_int(body)
    return str(n) if n is not None else body


def _floor(text: str) -> str:
    """Floor text to 'N樓', 'N樓之M' or '地下N樓'."""
    text = text.replace("F", "樓").replace("f", "樓").replace("層", "樓")
    m = re.fullmatch(r"(?:B|地下)(\d+|[一二三四五六七八九十]+)樓?", text)
    if m:
        n = m.group(1)
        return f"地下{int(n) if n.isdigit() else cn_to_int(n)}樓"
    m = re.fullmatch(r"(\d+|[一二三四五六七八九十]+)樓(?:之(\d+|[一二三四五六七八九十]+))?", text)
    if m:
        n = m.group(1)
        floor = f"{int(n) if n.isdigit() else cn_to_int(n)}樓"
        if m.group(2):
            s = m.group(2)
            floor += f"之{int(s) if s.isdigit() else cn_to_int(s)}"
        return floor
    return text


def number_floor(text: str | None) -> tuple[str, str]:
    """Split the 號 column into the house number and the floor.

    ``２之３之２號`` -> (2之3之2, ''); ``50號之7`` -> (50之7, ''); ``21號四樓之5`` -> (21, 4樓之5);
    ``４９６一５號`` -> (496之5, ''); ``12-3號`` -> (12之3, '').
    """
    text = clean(text)
    if not text:
        return "", ""
    text = _DASH_BETWEEN_DIGITS.sub("之", text)
    m = re.fullmatch(r"(\d+(?:之\d+)*)號((?:之\d+)*)(.*)", text)
    if not m:
        m2 = re.fullmatch(r"(\d+(?:之\d+)*)", text)
        return (m2.group(1), "") if m2 else (text, "")
    number = m.group(1) + m.group(2)
    rest = m.group(3)
    return number, _floor(rest) if rest else ""


def village_neighborhood(village: str | None, neighborhood: str | None) -> tuple[str, int | None]:
    """村里 and 鄰: '045' -> 45; a 鄰 typed into the 村里 column ('廣福里010') is moved out."""
    village, nb = clean(village), clean(neighborhood).removesuffix("鄰")
    m = re.fullmatch(r"(.+?[村里])(\d+)鄰?", village)
    if m:
        village = m.group(1)
        nb = nb or m.group(2)
    if nb.isdigit():
        return village, int(nb)
    n = cn_to_int(nb) if nb else None
    return village, n


def full_address(county: str, district: str, road: str, section: str, lane: str, alley: str,
                 number: str, area: str = "") -> str:
    """The canonical address without floor: 臺中市西屯區臺灣大道三段99號."""
    return "".join([
        county, district, road, f"{section}段" if section else "", area,
        f"{lane}巷" if lane else "",
        f"{alley}弄" if alley else "",
        f"{number}號" if number else "",
    ])


def number_value(number: str) -> int | None:
    """The numeric main part of a house number (2之3之2 -> 2), used for nearest-number matching."""
    head = number.split("之", 1)[0] if number else ""
    return int(head) if head.isdigit() else None
