"""Real Taichung files from shared/data/real (skipped when the folder is absent)."""

import json

import psycopg
import pytest
import yaml

from geocloud.etl import run_pipeline

from conftest import needs_shared

COUNTS = {"L0205": 69, "L0206": 97, "L0207": 74, "L0208": 451}


@pytest.mark.parametrize("plan", sorted(COUNTS))
def test_real_zoning_loads_with_the_full_code_table(database, project, plan):
    src = needs_shared("zoning", f"{plan}.json")
    table = needs_shared("zoning", "landcode.csv")
    cfg = yaml.safe_load((project / "etl" / "zoning.yml").read_text(encoding="utf-8"))
    cfg["zone_codes"] = str(table)
    (project / "etl" / "zoning.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    report = run_pipeline("zoning", src)
    assert report.status == "published"
    assert report.counts["loaded"] == {"zoning": COUNTS[plan]}
    assert report.crs.startswith("EPSG:3826")
    features = json.loads(src.read_text(encoding="utf-8"))["features"]
    first = features[0]["properties"]
    with psycopg.connect(database) as conn:
        row = conn.execute("SELECT zone_name, zone_code, plan_area_name, zone_category FROM live.zoning "
                           "WHERE zone_id = %s", (str(first["OBJECTID"]),)).fetchone()
        valid = conn.execute("SELECT bool_and(ST_IsValid(geom)) FROM live.zoning").fetchone()[0]
    assert row[:3] == (first["使用分"], first["分區代"], first["計畫_1"]) and row[3]
    assert valid


def test_real_boundaries_in_wgs84_load_as_districts(database, project):
    src = needs_shared("boundaries", "taichung-towns-1982.geojson")
    (project / "etl" / "towns.yml").write_text(
        "pipeline: towns\ndescription: 1982 towns\nsource: {format: geojson}\n"
        "outputs:\n  - layer: districts\n    fields: {district_code: name, name: name}\n", encoding="utf-8")
    report = run_pipeline("towns", src)
    assert report.status == "published" and report.crs.startswith("EPSG:4326")
    # 31 features: one with an unclosed ring (repaired), two with empty geometries (dropped, counted)
    assert report.counts["read"] == 31 and report.counts["loaded"] == {"districts": 29}
    assert report.counts["dropped_empty"] == 2 and report.counts["repaired"] >= 1
    assert any("unclosed ring" in i["message"] for i in report.quality["issues"])
    with psycopg.connect(database) as conn:
        x, y = conn.execute("SELECT ST_X(ST_Centroid(geom)), ST_Y(ST_Centroid(geom)) FROM live.districts "
                            "WHERE name = '台中縣豐原市'").fetchone()
    assert 205_000 < x < 225_000 and 2_675_000 < y < 2_695_000  # 豐原, in TWD97 metres
