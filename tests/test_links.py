"""A collection document links everything that belongs to its layer (tilesets, TileJSON, styles,
downloads, metadata record, queryables, sortables), every such link answers with the media type it
advertises, and the sortables and the Shapefile's field-name table say what they promise."""

import csv
import io
import zipfile

import httpx
import psycopg
import pyogrio
import pytest
from owslib.ogcapi.features import Features

from geocloud.catalog import get_catalog
from geocloud.serve.ogcapi.links import DOWNLOADS, collection_links

REL = "http://www.opengis.net/def/rel/ogc/1.0/"
SCHEMA = REL + "schema"  # pygeoapi's collection schema links: the api helper's route (issue #14)
RESTRICTED = {"inspection_sites", "road_works"}
BELONGS = {REL + "tilesets-vector", "stylesheet", "enclosure", "describedby", REL + "queryables", REL + "sortables"}


def _headers(served, who):
    return {"X-API-Key": served.keys["fire"]} if who == "key" else {}


def _media(value: str) -> str:
    return value.split(";")[0].strip().lower()


def _documents(served, headers):
    """Each collection as /collections lists it and as /collections/{id} answers, in JSON."""
    listed = served.get("/collections", params={"f": "json"}, headers=headers).json()["collections"]
    return {c["id"]: (c, served.get(f"/collections/{c['id']}", params={"f": "json"}, headers=headers).json())
            for c in listed}


@pytest.mark.parametrize("who", ["anonymous", "key"])
def test_every_link_of_every_collection_answers_with_its_media_type(served, who):
    headers = _headers(served, who)
    docs = _documents(served, headers)
    assert (RESTRICTED <= set(docs)) == (who == "key")
    checked, wrong = set(), []
    with httpx.Client(base_url=served.url, headers=headers, timeout=120) as client:
        for cid, (entry, document) in docs.items():
            assert {l["href"] for l in document["links"]} <= {l["href"] for l in entry["links"]}, cid
            if entry.get("layerDataType") != "Coverage":  # rasters link their own (tests/test_rasters_ogc.py)
                assert BELONGS <= {l["rel"] for l in document["links"]}, cid
            for link in document["links"]:
                href = link["href"]
                if not href.startswith(served.url) or link["rel"] == SCHEMA or href in checked:
                    continue  # the license on data.gov.tw; pygeoapi's schema links (the api helper's)
                checked.add(href)
                with client.stream("GET", href.removeprefix(served.url)) as r:
                    if r.status_code != 200 or _media(r.headers["content-type"]) != _media(link["type"]):
                        wrong.append((link["rel"], link["type"], href, r.status_code, r.headers.get("content-type")))
    assert wrong == []
    assert len(checked) > 15 * len(docs)  # items, queryables, tiles, TileJSON, 2 styles, 6 downloads, ...


def _links(document, rel, media=None):
    return [l for l in document["links"] if l["rel"] == rel and (media is None or _media(l["type"]) == media)]


def test_a_collection_links_what_belongs_to_it_under_the_url_reached(served):
    doc = served.get("/collections/zoning", params={"f": "json"}).json()
    base = served.url  # not GEOCLOUD_PUBLIC_URL's port: the URL this request reached
    prefix = f"{base}/collections/zoning"
    assert [l["href"] for l in _links(doc, REL + "tilesets-vector")] == [f"{prefix}/tiles"]
    assert _links(doc, "describedby", "application/json")[0]["href"] == \
        f"{prefix}/tiles/WebMercatorQuad/tilejson.json"
    assert {l["type"]: l["href"] for l in _links(doc, "stylesheet")} == {
        "application/vnd.mapbox.style+json": f"{base}/styles/zoning.json",
        "application/vnd.qgis.qml": f"{base}/styles/zoning.qml"}
    enclosures = _links(doc, "enclosure")
    assert [l["href"] for l in enclosures] == [f"{prefix}/download?f={fmt}" for fmt in DOWNLOADS]
    assert [l["type"] for l in enclosures] == [media for media, _, _ in DOWNLOADS.values()]
    assert all(l["title"] for l in enclosures) and len({l["title"] for l in enclosures}) == len(DOWNLOADS)
    assert "length" not in enclosures[0]  # streamed: no size is claimed
    assert _links(doc, "describedby", "application/xml")[0]["href"] == f"{base}/metadata/zoning.xml"
    assert _links(doc, REL + "queryables", "application/schema+json")
    assert [l["href"] for l in _links(doc, REL + "sortables")] == [f"{prefix}/sortables"]
    english = served.get("/collections/zoning", params={"f": "json", "lang": "en"}).json()
    assert _links(english, "enclosure")[3]["title"].startswith("Shapefile")
    assert _links(doc, "enclosure")[3]["title"].startswith("Shapefile（")


def test_downloads_of_a_restricted_layer_say_that_following_them_accepts_the_terms(served):
    doc = served.get("/collections/inspection_sites", params={"f": "json", "lang": "en"},
                     headers=_headers(served, "key")).json()
    for link in _links(doc, "enclosure"):
        assert link["href"].endswith("&accept_terms=tcg-restricted-2026-1")
        assert "accepts the terms of use tcg-restricted-2026-1" in link["title"]


def test_only_the_styles_a_layer_has_are_linked(project):
    (project / "styles").mkdir()
    (project / "styles" / "zoning.json").write_text("{}", encoding="utf-8")  # no zoning.qml
    catalog = get_catalog()
    zoning = [l for l in collection_links(catalog.layers["zoning"], "http://x") if l["rel"] == "stylesheet"]
    assert [l["href"] for l in zoning] == ["http://x/styles/zoning.json"]
    assert not [l for l in collection_links(catalog.layers["roads"], "http://x") if l["rel"] == "stylesheet"]


def test_sortables_are_what_sortby_takes_titled_in_the_requested_language(served):
    layer = get_catalog().layers["zoning"]
    r = served.get("/collections/zoning/sortables")
    assert r.status_code == 200 and r.headers["content-type"] == "application/schema+json"
    body = r.json()
    assert list(body["properties"]) == [f.name for f in layer.fields]
    props = body["properties"]
    assert props["plan_area_name"]["title"] == "計畫區名稱" and props["coverage_ratio"]["type"] == "number"
    assert props["plan_area_name"]["x-title-en"] == "Plan area"
    assert body["title"] == layer.title.zh_TW and r.headers["content-language"] == "zh-TW"
    en = served.get("/collections/zoning/sortables", headers={"Accept-Language": "en-GB,en;q=0.8"}).json()
    assert en["properties"]["plan_area_name"]["title"] == "Plan area" and en["title"] == layer.title.en
    assert served.get("/collections/zoning/sortables", params={"lang": "en"}).json()["title"] == layer.title.en
    with psycopg.connect(served.db_url) as conn:
        for name in body["properties"]:
            top = served.get("/collections/zoning/items", params={"sortby": name, "limit": 1,
                                                                   "f": "json"}).json()["features"][0]
            best = conn.execute(f"SELECT min({name}) FROM live.zoning").fetchone()[0]
            assert top["properties"][name] == best, name
    assert served.get("/collections/zoning/sortables", params={"f": "html"}).status_code == 400
    assert served.get("/collections/inspection_sites/sortables").status_code == 401


def test_clients_still_open_the_collections(served):
    api = Features(served.url)
    collection = api.collection("zoning")
    assert collection["id"] == "zoning" and any(l["rel"] == "enclosure" for l in collection["links"])
    assert "zone_code" in api.collection_queryables("zoning")["properties"]
    layers = {name for name, _ in pyogrio.list_layers("OAPIF:" + served.url)}
    assert {"zoning", "roads", "buildings"} <= layers
    assert pyogrio.read_info("OAPIF:" + served.url, layer="zoning")["features"] > 0


def test_the_shapefile_zip_maps_each_short_name_back_to_the_field(served, tmp_path):
    layer = get_catalog().layers["zoning"]
    r = served.get("/collections/zoning/download", params={"f": "shp"})
    assert r.status_code == 200
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    zf.extractall(tmp_path)
    dbf_fields = list(pyogrio.read_info(tmp_path / "zoning.shp")["fields"])
    assert "plan_are_1" in dbf_fields and "zone_categ" in dbf_fields
    table = list(csv.DictReader(io.StringIO(zf.read("zoning.fields.csv").decode("utf-8-sig"))))
    back = {row["short_name"]: row for row in table}
    assert list(back) == dbf_fields
    for short in dbf_fields:
        field = layer.field(back[short]["field"])
        assert (back[short]["title_zh-TW"], back[short]["title_en"], back[short]["type"]) == \
            (field.title.zh_TW, field.title.en, field.type)
    assert back["plan_are_1"]["field"] == "plan_area_name" and back["zone_categ"]["field"] == "zone_category"
    log = (served.data_dir / "server.log").read_text(encoding="utf-8", errors="replace")
    assert "laundered" not in log
