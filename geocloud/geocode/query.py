"""Parse a free-text 門牌 query into the parts the address layer holds, with the ETL's normalizer.

``台中市西屯區臺灣大道3段９９號`` -> county 臺中市, district 西屯區, road 臺灣大道, section 三, number 99.
A number that ends the text is the house number even without its 號 (``臺灣大道三段99``), as people type it.
Characters missing from Big5 (``■``, ``?``) become single-character wildcards in the road name.
"""

import re
from dataclasses import asdict, dataclass

from geocloud import address
from geocloud.address.taichung import DISTRICTS

MAX_LENGTH = 200
COUNTIES = ("臺北市", "新北市", "桃園市", "臺中市", "臺南市", "高雄市", "基隆市", "新竹市", "嘉義市", "新竹縣",
            "苗栗縣", "彰化縣", "南投縣", "雲林縣", "嘉義縣", "屏東縣", "宜蘭縣", "花蓮縣", "臺東縣", "澎湖縣",
            "金門縣", "連江縣")
DISTRICT_NAMES = tuple(name for _, name, _ in DISTRICTS)
PLACEHOLDERS = "■□?？∮"
_ROAD = re.compile(
    r"(?P<road>[^\d\s]+?(?:大道|路|街|道|巷(?=\d)))"
    r"(?:(?P<section>\d{1,2}|[一二三四五六七八九十]{1,3})段)?"
    r"(?P<area>[^\d巷弄號]*?)"
    r"(?:(?P<lane>\d+|[一二三四五六七八九十百]+|[^\d\s巷弄號]{1,4}?)巷)?"
    r"(?:(?P<alley>\d+|[一二三四五六七八九十百]+)弄)?"
    r"(?:(?P<number>\d+(?:之\d+)*)(?:號|(?=\s*$))(?P<sub>(?:之\d+)*))?"  # 號 may be left off at the end
    r"(?P<floor>.*)$")


class NotAnAddress(ValueError):
    """The text is empty, too long or holds no road and number; the message says which."""


@dataclass(frozen=True)
class Parts:
    county: str = ""
    district: str = ""
    village: str = ""
    neighborhood: int | None = None
    road: str = ""
    section: str = ""
    lane: str = ""
    alley: str = ""
    number: str = ""
    floor: str = ""

    @property
    def road_pattern(self) -> str | None:
        """A SQL LIKE pattern when the road name holds Big5 placeholders (瓦■路 -> 瓦_路)."""
        if not any(c in self.road for c in PLACEHOLDERS):
            return None
        return "".join("_" if c in PLACEHOLDERS else c for c in self.road)

    @property
    def number_value(self) -> int | None:
        return address.number_value(self.number)

    def as_dict(self) -> dict:
        return asdict(self)


def _take(text: str, options) -> tuple[str, str]:
    for option in options:
        if text.startswith(option):
            return option, text[len(option):]
    return "", text


def _cn_digits(text: str) -> str:
    """號 and 巷 written in Chinese numerals (九十九號) as Arabic digits."""
    return re.sub(r"[一二三四五六七八九十百]+(?=[號巷弄])",
                  lambda m: str(address.normalize.cn_to_int(m.group(0))), text)


def parse(text: str | None) -> Parts:
    raw = (text or "").strip()
    if not raw:
        raise NotAnAddress("the address is empty")
    if len(raw) > MAX_LENGTH:
        raise NotAnAddress(f"the address is {len(raw)} characters long; at most {MAX_LENGTH} are accepted")
    t = address.county_district(address.clean(raw))
    t = re.sub(r"(?<=\d)[-－―‐一~～](?=\d)", "之", t)  # 12-3號, 496一5號
    county, t = _take(t, COUNTIES)
    district, t = _take(t, DISTRICT_NAMES)
    if not district:
        m = re.match(r"([^\d\s]{1,3}?[區鄉鎮市])(?=[^\d\s]{2,}(?:大道|路|街))", t)
        if m and not m.group(1).endswith("市") or (m and county):
            district, t = m.group(1), t[m.end():]
    village = ""
    m = re.match(r"([^\d\s]{1,3}?[里村])(?=\d+鄰|[^\d\s]{2,}?(?:大道|路|街))", t)
    if m:
        village, t = m.group(1), t[m.end():]
    neighborhood = None
    m = re.match(r"(\d+)鄰", t)
    if m:
        neighborhood, t = int(m.group(1)), t[m.end():]
    t = _cn_digits(t.replace("段段", "段"))
    m = _ROAD.match(t)
    if not m or not m.group("road"):
        raise NotAnAddress(f"no road or street name (…路, …街, …大道) found in {raw!r}")
    road, section = address.road_section(m.group("road") + (f"{m.group('section')}段" if m.group("section") else ""))
    number = (m.group("number") or "") + (m.group("sub") or "")
    floor = address.normalize._floor(m.group("floor")) if m.group("floor") else ""
    return Parts(county=county or ("臺中市" if district in DISTRICT_NAMES else ""), district=district,
                 village=village, neighborhood=neighborhood, road=road, section=section,
                 lane=address.lane_alley(m.group("lane"), "巷") if m.group("lane") else "",
                 alley=address.lane_alley(m.group("alley"), "弄") if m.group("alley") else "",
                 number=number, floor=floor)
