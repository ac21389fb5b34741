"""門牌 geocoding against the loaded sample city: the reference cases, fuzzy rules, locks, batches."""

import csv
import io

import httpx
import psycopg
import pytest

from conftest import geocloud_cli

HALL = (120.647296502, 24.1619892378)


def one(served, sql, *args):
    with psycopg.connect(served.db_url) as conn:
        return conn.execute(sql, args).fetchone()


def geocode(served, address, **params):
    r = served.get("/geocode", params={"address": address, **params})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("query, raw", [
    ("臺中市西屯區台灣大道三段99號", "臺灣大道三段９９號"),
    ("台中市西屯區臺灣大道3段９９號", "臺灣大道三段９９號"),
    ("臺中市西屯區惠來里045鄰臺灣大道三段99號", "臺灣大道三段９９號"),
    ("西屯區文心路二段２之３之２號", "文心路二段２之３之２號"),
    ("臺中市西屯區市政路50號之7", "市政路50號之7"),
    ("臺中市西屯區中興路67巷28弄21號四樓之5", "中興路67巷28弄21號四樓之5"),
    ("惠中路一段４９６一５號", "惠中路一段４９６一５號"),
    ("西屯區瓦■路12號", "瓦磘路１２號"),
    ("臺中市西屯區臺灣大道三段99", "臺灣大道三段９９號"),  # 號 left off
    ("西屯區文心路二段２之３之２", "文心路二段２之３之２號"),
])
def test_reference_cases_resolve_to_the_right_point(served, query, raw):
    lon, lat = one(served, "SELECT ST_X(ST_Transform(geom, 4326)), ST_Y(ST_Transform(geom, 4326)) FROM live.addresses "
                           "WHERE raw_address = %s", raw)
    body = geocode(served, query)
    assert body["match_type"] == "exact", body
    c = body["candidates"][0]
    assert (c["x"], c["y"]) == (pytest.approx(lon, abs=1e-7), pytest.approx(lat, abs=1e-7))


def test_old_county_names_and_floors(served):
    road, section, number, district, key = one(
        served, "SELECT road, section, number, district, address_key FROM live.addresses WHERE district = '豐原區' "
                "AND lane IS NULL AND floor IS NULL AND number ~ '^[0-9]+$' ORDER BY address_key LIMIT 1")
    query = f"台中縣豐原市{road}{(section or '') and section + '段'}{number}號五樓"
    c = geocode(served, query)["candidates"][0]
    assert c["match_type"] == "exact" and c["matched_address"] == key


def test_fuzzy_nearest_number_same_parity_first(served):
    road, section, n = one(served, """
        SELECT a.road, coalesce(a.section, ''), a.number_value FROM live.addresses a
        WHERE a.lane IS NULL AND a.number_value > 10 AND NOT EXISTS (
            SELECT 1 FROM live.addresses b WHERE b.road = a.road AND coalesce(b.section, '') = coalesce(a.section, '')
            AND b.lane IS NULL AND b.number_value BETWEEN a.number_value + 1 AND a.number_value + 2)
        ORDER BY a.address_key LIMIT 1""")
    query = f"{road}{section + '段' if section else ''}{n + 2}號"
    body = geocode(served, query)
    c = body["candidates"][0]
    assert c["match_type"] == "fuzzy:nearest-number:same-parity"
    assert int(c["parts"]["number"].split("之")[0]) % 2 == n % 2
    assert abs(int(c["parts"]["number"].split("之")[0]) - (n + 2)) <= 30 and c["score"] < 100


@pytest.mark.parametrize("same_parity", ["true", "false"])
def test_a_nearest_number_of_the_other_parity_is_labelled_so(served, same_parity):
    """100號 -> 99號: within max_distance=1 only the other side of the street is near enough."""
    road, section, n = one(served, """
        SELECT a.road, coalesce(a.section, ''), a.number_value FROM live.addresses a
        WHERE a.lane IS NULL AND a.alley IS NULL AND a.number_value > 10 AND NOT EXISTS (
            SELECT 1 FROM live.addresses b WHERE b.road = a.road AND coalesce(b.section, '') = coalesce(a.section, '')
            AND b.lane IS NULL AND b.alley IS NULL AND b.number_value = a.number_value + 1)
        ORDER BY a.address_key LIMIT 1""")
    query = f"{road}{section + '段' if section else ''}{n + 1}號"
    body = geocode(served, query, max_distance=1, same_parity=same_parity)
    c = body["candidates"][0]
    assert int(c["parts"]["number"].split("之")[0]) % 2 != (n + 1) % 2
    assert body["match_type"] == c["match_type"] == "fuzzy:nearest-number:other-parity"
    tgos = served.get("/geocode", params={"address": query, "max_distance": 1, "format": "tgos"}).json()
    assert tgos["Info"][0]["OutMatchType"] == "[最近門牌號機制]"


def test_a_fuzzy_match_never_crosses_a_locked_district(served):
    road, section, district, n = one(served, """
        SELECT road, coalesce(section, ''), district, number_value FROM live.addresses WHERE lane IS NULL
        AND number_value IS NOT NULL ORDER BY address_key LIMIT 1""")
    other = one(served, """SELECT d.name FROM live.districts d WHERE NOT EXISTS (
        SELECT 1 FROM live.addresses a WHERE a.district = d.name AND a.road = %s) ORDER BY 1 LIMIT 1""", road)[0]
    query = f"臺中市{other}{road}{section + '段' if section else ''}{n}號"
    free = geocode(served, query)
    assert free["candidates"] and free["candidates"][0]["parts"]["district"] == district
    locked = geocode(served, query, lock="district")
    assert locked["match_type"] == "none" and locked["candidates"] == []


def test_road_level_when_no_number_matches(served):
    body = geocode(served, "臺中市西屯區臺灣大道三段")
    assert body["match_type"] == "road" and body["candidates"][0]["score"] == 40.0
    far = geocode(served, "臺灣大道三段99999號", max_distance=5)
    assert far["match_type"] == "road"


def test_crs_and_tgos_format(served):
    body = geocode(served, "臺中市西屯區臺灣大道三段99號", crs="EPSG:3826")
    c = body["candidates"][0]
    assert (c["x"], c["y"]) == (pytest.approx(214160.2912, abs=0.001), pytest.approx(2673008.3139, abs=0.001))
    lat_lon = geocode(served, "臺中市西屯區臺灣大道三段99號", crs="EPSG:4326")["candidates"][0]
    assert lat_lon["x"] == pytest.approx(HALL[1], abs=1e-7)
    tgos = served.get("/geocode", params={"address": "台中市西屯區台灣大道三段99號", "format": "tgos",
                                          "crs": "EPSG:3826"}).json()
    row = tgos["AddressList"][0]
    assert row["COUNTY"] == "臺中市" and row["TOWN"] == "西屯區" and row["VILLAGE"] == "惠來里"
    assert row["NEIGHBORHOOD"] == "45鄰" and row["ROAD"] == "臺灣大道" and row["SECTION"] == "3"
    assert row["NUMBER"] == "99號" and row["FULL_ADDR"] == "臺中市西屯區惠來里45鄰臺灣大道三段99號"
    assert tgos["Info"][0]["OutMatchType"] == "完全比對" and row["X"] == pytest.approx(214160.2912)


def test_reverse_lookup(served):
    body = served.get("/reverse", params={"lon": HALL[0], "lat": HALL[1]}).json()
    assert body["nearest_address"]["matched_address"] == "臺中市西屯區臺灣大道三段99號"
    assert body["nearest_address"]["distance_m"] < 0.5
    assert body["district"] == {"code": "6600600", "name": "西屯區"} and body["village"] == "惠來里"
    zone = body["zoning"]
    expected = one(served, "SELECT zone_name, coverage_ratio, floor_area_ratio FROM live.zoning WHERE "
                           "ST_Contains(geom, ST_Transform(ST_SetSRID(ST_MakePoint(%s, %s), 4326), 3826))", *HALL)
    assert (zone["使用分區"], zone["建蔽率"], zone["容積率"]) == expected
    metres = served.get("/reverse", params={"x": 214160.2912, "y": 2673008.3139, "crs": "EPSG:3826"}).json()
    assert metres["nearest_address"]["matched_address"] == "臺中市西屯區臺灣大道三段99號"


def _batch(served, content: bytes, **params):
    return httpx.post(served.url + "/geocode/batch", params=params, content=content,
                      headers={"Content-Type": "text/csv"}, timeout=120)


def test_batch_keeps_every_row_in_order_and_reports_bad_ones(served):
    keys = [r[0] for r in psycopg.connect(served.db_url).execute(
        "SELECT full_address FROM live.addresses WHERE floor IS NULL ORDER BY address_key LIMIT 300").fetchall()]
    rows = [("id", "地址", "note")] + [(str(i), k, f"n{i}") for i, k in enumerate(keys)]
    rows.insert(50, ("bad", "not an address", "x"))
    rows.insert(120, ("empty", "", "y"))
    text = "\n".join(",".join(r) for r in rows) + "\n"
    r = _batch(served, text.encode("utf-8"), column="地址", crs="EPSG:3826")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    out = list(csv.DictReader(io.StringIO(r.text)))
    assert [o["id"] for o in out] == [row[0] for row in rows[1:]]
    assert [o["note"] for o in out] == [row[2] for row in rows[1:]]
    good = [o for o in out if o["id"] not in ("bad", "empty")]
    assert all(o["match_type"] == "exact" and o["matched_address"] == o["地址"] for o in good)
    bad = {o["id"]: o for o in out if o["id"] in ("bad", "empty")}
    assert bad["bad"]["match_type"] == "error" and "no road" in bad["bad"]["error"]
    assert bad["empty"]["match_type"] == "error" and "empty" in bad["empty"]["error"]


def test_batch_bad_uploads(served):
    big5 = "編號,地址\n1,臺中市西屯區臺灣大道三段99號\n".encode("cp950")
    r = _batch(served, big5, column="地址")
    assert r.status_code == 400 and "Big5" in r.json()["description"] and r.json()["description"].startswith("body:")
    r = _batch(served, "編號,住址\n1,x\n".encode(), column="地址")
    assert r.status_code == 400 and "no column '地址'" in r.json()["description"]
    assert _batch(served, b"a\n1\n").status_code == 400


@pytest.mark.parametrize("params, name", [
    ({"address": ""}, "address"),
    ({"address": "臺" * 500}, "address"),
    ({"address": "hello world"}, "address"),
    ({"address": "臺灣大道三段99號", "crs": "EPSG:9999"}, "crs"),
    ({"address": "臺灣大道三段99號", "lock": "planet"}, "lock"),
    ({"address": "臺灣大道三段99號", "candidates": "50"}, "candidates"),
    ({"address": "臺灣大道三段99號", "format": "xml"}, "format"),
])
def test_bad_queries_are_400_naming_the_parameter(served, params, name):
    r = served.get("/geocode", params=params)
    assert r.status_code == 400 and r.json()["description"].startswith(name + ":")


def test_reverse_bad_input(served):
    assert served.get("/reverse", params={"lon": "abc", "lat": 24}).json()["description"].startswith("lon:")
    assert served.get("/reverse", params={"lon": 500, "lat": 24}).status_code == 400
    assert served.get("/reverse", params={"x": 1}).json()["description"].startswith("y:")


def test_cli_batch_and_its_errors(served, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("編號,地址\n1,臺中市西屯區台灣大道三段99號\n2,???\n3,惠中路一段４９６一５號\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    env = {"GEOCLOUD_DATABASE_URL": served.db_url}
    r = geocloud_cli("geocode", src, "--column", "地址", "--out", out, env=env)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [row["match_type"] for row in rows] == ["exact", "error", "exact"]
    assert "3 rows geocoded" in r.stderr and "exact" in r.stderr
    big5 = tmp_path / "big5.csv"
    big5.write_bytes("編號,地址\n1,臺中市\n".encode("cp950"))
    r = geocloud_cli("geocode", big5, "--column", "地址", env=env)
    assert r.returncode == 5 and "Big5" in r.stderr and "Traceback" not in r.stderr
    r = geocloud_cli("geocode", src, "--column", "住址", env=env)
    assert r.returncode == 5 and "no column '住址'" in r.stderr


# -- messy input of issue #17's realistic mix that the parser alone cannot resolve --------------------

def _misspelt(served, road: str) -> str:
    """``road`` with the first character of its name replaced so that it is no road of the layer."""
    for wrong in "㐀㐁㐂":
        typo = wrong + road[1:]
        if one(served, "SELECT count(*) FROM live.addresses WHERE road = %s", typo)[0] == 0:
            return typo
    raise AssertionError(f"no misspelling of {road} is free")


def test_one_wrong_character_in_the_road_name_is_corrected_and_says_so(served):
    road, full = one(served, "SELECT road, full_address FROM live.addresses WHERE length(road) >= 4 AND floor IS NULL "
                             "AND number ~ '^[0-9]+$' ORDER BY address_key LIMIT 1")
    query = full.replace(road, _misspelt(served, road), 1)
    body = geocode(served, query)
    c = body["candidates"][0]
    assert body["match_type"] == c["match_type"] == "fuzzy:road-name" and c["matched_address"] == full
    assert c["parts"]["road"] == road and c["score"] < 100 and body["ambiguous"] is False
    # the caller may forbid the correction: the road as typed, or exact matches only
    assert geocode(served, query, lock="road")["match_type"] == "none"
    assert geocode(served, query, fuzzy="none")["match_type"] == "none"
    # a number that does not exist on the misspelt road: the nearest number of the corrected one
    near = geocode(served, query.replace(f"{c['parts']['number']}號", f"{int(c['parts']['number']) + 20000}號"))
    assert near["match_type"] in ("fuzzy:road-name:road", "fuzzy:road-name:nearest-number:same-parity")
    assert near["candidates"][0]["parts"]["road"] == road
    rows = list(csv.DictReader(io.StringIO(_batch(served, f"id,地址\n1,{query}\n".encode(), column="地址").text)))
    assert rows[0]["match_type"] == "fuzzy:road-name" and rows[0]["matched_address"] == full


ROWS = [  # (district, road, number, x): one address in two districts, two roads one character apart
    ("北區", "健行路", "10", 0), ("西屯區", "健行路", "10", 50), ("北區", "中山路", "7", 100), ("北區", "中正路", "7", 150)]


def _layer(url: str, rows) -> None:
    """A live address table of the layer's shape holding ``rows`` (a new live version each call)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS live.addresses")
        conn.execute("""CREATE TABLE live.addresses (address_key text, full_address text, county text, district text,
            village text, neighborhood int, road text, section text, lane text, alley text, number text,
            number_value int, floor text, geom geometry(Point, 3826))""")
        for district, road, number, x in rows:
            full = f"臺中市{district}{road}{number}號"
            conn.execute("INSERT INTO live.addresses VALUES (%s, %s, '臺中市', %s, NULL, NULL, %s, NULL, NULL, NULL, %s,"
                         " %s, NULL, ST_SetSRID(ST_MakePoint(%s, 2670000), 3826))",
                         (full, full, district, road, number, int(number), 214000 + x))


def test_an_address_the_query_does_not_single_out_is_flagged_ambiguous(database):
    from geocloud.geocode import Options, geocode_one

    _layer(database, ROWS)
    with psycopg.connect(database, autocommit=True) as conn:  # no open transaction holds the table a new version drops
        def ask(text, **kw):
            return geocode_one(conn, text, Options(candidates=2, **kw), "x")

        no_district = ask("臺中市健行路10號")  # in 北區 and in 西屯區
        assert no_district["ambiguous"] is True and no_district["match_type"] == "exact"
        assert {c["parts"]["district"] for c in no_district["candidates"]} == {"北區", "西屯區"}
        named = ask("臺中市西屯區健行路10號")
        assert named["ambiguous"] is False and named["candidates"][0]["parts"]["district"] == "西屯區"
        two_roads = ask("臺中市北區中華路7號")  # 中山路 and 中正路 both hold 7號, one character away
        assert two_roads["ambiguous"] is True and two_roads["match_type"] == "fuzzy:road-name"
        assert {c["parts"]["road"] for c in two_roads["candidates"]} == {"中山路", "中正路"}
        assert ask("臺中市北區健康路10號")["candidates"][0]["parts"]["road"] == "健行路"
        _layer(database, [("北區", "健康路", "10", 0)])  # a new live version: its road names are read anew
        assert ask("臺中市北區健康路10號")["match_type"] == "exact"
        assert ask("臺中市北區健行路10號")["candidates"][0]["parts"]["road"] == "健康路"
