"""門牌 normalization: the rules and test cases of shared/reference/taiwan.md."""

import pytest

from geocloud.address import county_district, full_address, lane_alley, number_floor, road_section, \
    village_neighborhood
from geocloud.address.normalize import cn_to_int, int_to_cn


@pytest.mark.parametrize("raw, number, floor", [
    ("９９號", "99", ""),
    ("２之３之２號", "2之3之2", ""),
    ("50號之7", "50之7", ""),
    ("21號四樓之5", "21", "4樓之5"),
    ("４９６一５號", "496之5", ""),
    ("12-3號", "12之3", ""),
    ("５號三樓", "5", "3樓"),
    ("3號B1", "3", "地下1樓"),
    ("7號地下一層", "7", "地下1樓"),
    ("10號12F", "10", "12樓"),
])
def test_numbers_and_floors(raw, number, floor):
    assert number_floor(raw) == (number, floor)


@pytest.mark.parametrize("raw, road, section", [
    ("臺灣大道三段", "臺灣大道", "三"),
    ("台灣大道3段", "臺灣大道", "三"),
    ("建和路二段段", "建和路", "二"),
    ("中清路ㄧ段", "中清路", "一"),
    ("文心路十二段", "文心路", "十二"),
    ("台中港路", "臺灣大道", ""),
    ("瓦磘路", "瓦磘路", ""),
])
def test_roads_and_sections(raw, road, section):
    assert road_section(raw) == (road, section)


def test_lanes_villages_counties():
    assert lane_alley("十六巷", "巷") == "16"
    assert lane_alley("67巷", "巷") == "67"
    assert lane_alley("便行巷", "巷") == "便行"
    assert village_neighborhood("廣福里010", "") == ("廣福里", 10)
    assert village_neighborhood("惠來里", "045") == ("惠來里", 45)
    assert county_district("臺中縣豐原市中正路") == "臺中市豐原區中正路"
    assert cn_to_int("一百零五") == 105 and cn_to_int("二十") == 20 and int_to_cn(12) == "十二"


def test_full_address_is_canonical():
    assert full_address("臺中市", "西屯區", "臺灣大道", "三", "", "", "99") == "臺中市西屯區臺灣大道三段99號"
    assert full_address("臺中市", "梧棲區", "中興路", "", "67", "28", "21") == "臺中市梧棲區中興路67巷28弄21號"
