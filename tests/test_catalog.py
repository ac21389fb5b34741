"""The layer catalog: the city's layers parse, and every kind of mistake is named precisely."""

import json

import pytest
import yaml

from geocloud.catalog import get_catalog, load_catalog
from geocloud.errors import ConfigError

from conftest import ROOT, geocloud_cli

CORE = {"addresses", "roads", "buildings", "zoning", "landmarks", "districts", "topo_contours", "topo_water",
        "topo_spot_heights", "topo_annotation", "satellite", "topo_sheets"}


def test_the_city_catalog_defines_the_core_layers():
    catalog = load_catalog(ROOT / "layers", ROOT / "agencies.yml")
    assert CORE <= set(catalog.layers)
    for layer in catalog.layers.values():
        assert layer.title.zh_TW and layer.title.en and layer.description.zh_TW and layer.description.en
        assert layer.crs == "EPSG:3826"
        assert layer.license == "政府資料開放授權條款－第1版"
        if layer.kind == "vector":
            assert layer.key in {f.name for f in layer.fields}
            assert all(f.title.zh_TW and f.title.en for f in layer.fields)
    assert catalog.layers["satellite"].kind == "raster"
    assert catalog.layers["zoning"].geometry == "MultiPolygon"


def _write(project, name, data):
    (project / "layers" / f"{name}.yml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def _roads(project):
    return yaml.safe_load((project / "layers" / "roads.yml").read_text(encoding="utf-8"))


def _error(project) -> str:
    with pytest.raises(ConfigError) as exc:
        load_catalog(project / "layers", project / "agencies.yml")
    return str(exc.value)


def test_unknown_key_names_file_key_and_likely_fix(project):
    data = _roads(project)
    data["titel"] = data.pop("title")
    _write(project, "roads", data)
    msg = _error(project)
    assert "roads.yml" in msg and "unknown key 'titel'" in msg and "did you mean 'title'" in msg


def test_missing_field_is_named(project):
    data = _roads(project)
    del data["access"]
    _write(project, "roads", data)
    msg = _error(project)
    assert "roads.yml" in msg and "missing required key 'access'" in msg


def test_unknown_crs_is_refused(project):
    data = _roads(project)
    data["crs"] = "EPSG:999999"
    _write(project, "roads", data)
    msg = _error(project)
    assert "key 'crs'" in msg and "unknown CRS 'EPSG:999999'" in msg


def test_duplicate_id_is_refused(project):
    data = _roads(project)
    _write(project, "roads2", data)
    msg = _error(project)
    assert "roads2.yml" in msg and "layer id 'roads' differs from the file name" in msg


def test_grant_to_unknown_agency_is_refused(project):
    data = _roads(project)
    data["access"] = {"level": "restricted", "grants": [{"agency": "NO-SUCH", "roles": ["analyst"]}]}
    _write(project, "roads", data)
    msg = _error(project)
    assert "access.grants[0].agency" in msg and "unknown agency 'NO-SUCH'" in msg and "TCG-FIRE" in msg


def test_bad_field_type_and_key_not_a_field(project):
    data = _roads(project)
    data["fields"][1]["type"] = "str"
    data["key"] = "nope"
    _write(project, "roads", data)
    msg = _error(project)
    assert "fields[1].type" in msg


def test_invalid_yaml_names_line(project):
    (project / "layers" / "roads.yml").write_text("id: roads\ntitle: [unclosed\n", encoding="utf-8")
    msg = _error(project)
    assert "roads.yml:" in msg and "invalid YAML" in msg


def test_cli_list_json_show_and_validate():
    out = geocloud_cli("layers", "list", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert CORE <= {layer["id"] for layer in data["layers"]}
    roads = next(layer for layer in data["layers"] if layer["id"] == "roads")
    assert roads["title"] == {"zh-TW": "道路中心線", "en": "Road centrelines"}
    show = geocloud_cli("layers", "show", "zoning")
    assert json.loads(show.stdout)["key"] == "zone_id"
    assert geocloud_cli("layers", "validate").returncode == 0
    table = geocloud_cli("layers", "list")
    assert "門牌位置" in table.stdout and "topo_sheets" in table.stdout


def test_cli_bad_catalog_exits_3_without_traceback(project):
    (project / "layers" / "roads.yml").write_text("id: roads\nbogus: 1\n", encoding="utf-8")
    out = geocloud_cli("layers", "validate", env={"GEOCLOUD_PROJECT_DIR": str(project)})
    assert out.returncode == 3
    assert "unknown key 'bogus'" in out.stderr and "Traceback" not in out.stderr


def test_unknown_layer_exits_6():
    out = geocloud_cli("layers", "show", "nope")
    assert out.returncode == 6 and "unknown layer 'nope'" in out.stderr


def test_pygeoapi_config_holds_no_resources():
    config = yaml.safe_load((ROOT / "pygeoapi-config.yml").read_text(encoding="utf-8"))
    assert "resources" not in config and "server" in config


def test_get_catalog_reads_the_configured_project(project):
    data = _roads(project)
    data["title"]["en"] = "Roads (edited)"
    _write(project, "roads", data)
    assert get_catalog().layer("roads").title.en == "Roads (edited)"


def test_portal_identifiers_must_carry_the_publishers_agency_code(project):
    data = _roads(project)
    data["publishing"]["datagov_identifier"] = "376000000A-000102"
    _write(project, "roads", data)
    msg = _error(project)
    assert "roads.yml: key 'publishing.datagov_identifier'" in msg and "387000000A" in msg


def test_a_broken_publisher_block_is_named(project):
    path = project / "agencies.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["publisher"]["oid"] = "not-an-oid"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    msg = _error(project)
    assert "agencies.yml: key 'publisher'" in msg and "oid" in msg
