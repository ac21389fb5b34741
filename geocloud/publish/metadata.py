"""TWSMP 2.0 (ISO 19139) metadata records, as TGOS holds them, derived from the catalog and the data.

A dataset record has the element set of real TGOS records (custodian, distributor and originator
contacts; citation dates; keywords; legal and security constraints; scale; topic; bounding box;
distribution formats and online resources; data quality with lineage). Service records (OGC API
Features, WMTS) follow ISO 19119 and point at the dataset records they serve.
"""

from datetime import datetime

from lxml import etree
from pyproj import CRS

from geocloud.catalog import Layer
from geocloud.catalog.models import Contact, Publisher
from geocloud.publish.distributions import distributions
from geocloud.publish.facts import Facts

NS = {
    "gmd": "http://www.isotc211.org/2005/gmd",
    "gco": "http://www.isotc211.org/2005/gco",
    "srv": "http://www.isotc211.org/2005/srv",
    "gml": "http://www.opengis.net/gml",
    "xlink": "http://www.w3.org/1999/xlink",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}
CODELISTS = "http://www.isotc211.org/2005/resources/Codelist/gmxCodelists.xml"
GEOMETRIC_OBJECTS = {"Point": "point", "MultiPoint": "point", "LineString": "curve", "MultiLineString": "curve",
                     "Polygon": "surface", "MultiPolygon": "surface"}
FREQUENCY = {"daily": "daily", "weekly": "weekly", "monthly": "monthly", "quarterly": "quarterly",
             "yearly": "annually", "irregular": "asNeeded"}
SERVICES = {"ogcapi": ("OGC API - Features", "OGC:API-Features", "/", "vector"),
            "wmts": ("WMTS", "OGC:WMTS", "/wmts/1.0.0/WMTSCapabilities.xml", "raster")}


def file_identifier(layer: Layer) -> str:
    return layer.publishing.tgos_file_identifier or f"geocloud-{layer.id}"


def _q(tag: str) -> str:
    prefix, name = tag.split(":")
    return f"{{{NS[prefix]}}}{name}"


def _el(parent, tag: str, text: str | None = None, **attrs):
    node = etree.SubElement(parent, _q(tag), {(_q(k.replace("_", ":", 1)) if "_" in k else k): v
                                               for k, v in attrs.items()})
    if text is not None:
        node.text = text
    return node


def _text(parent, tag: str, value, kind: str = "gco:CharacterString"):
    _el(_el(parent, tag), kind, str(value))


def _code(parent, tag: str, codelist: str, value: str):
    _el(_el(parent, tag), f"gmd:{codelist}", value, codeList=f"{CODELISTS}#{codelist}", codeListValue=value,
        codeSpace="ISOTC211/19115")


def _party(parent, tag: str, organisation: str, contact: Contact, publisher: Publisher, role: str, url: str | None = None):
    party = _el(_el(parent, tag), "gmd:CI_ResponsibleParty")
    _text(party, "gmd:organisationName", organisation)
    info = _el(_el(party, "gmd:contactInfo"), "gmd:CI_Contact")
    phone = _el(_el(info, "gmd:phone"), "gmd:CI_Telephone")
    _text(phone, "gmd:voice", contact.phone)
    address = _el(_el(info, "gmd:address"), "gmd:CI_Address")
    _text(address, "gmd:deliveryPoint", publisher.address.delivery_point)
    _text(address, "gmd:city", publisher.address.city)
    _text(address, "gmd:postalCode", publisher.address.postal_code)
    _text(address, "gmd:country", publisher.address.country)
    _text(address, "gmd:electronicMailAddress", contact.email)
    if url:
        _el(_el(_el(_el(info, "gmd:onlineResource"), "gmd:CI_OnlineResource"), "gmd:linkage"), "gmd:URL", url)
    _code(party, "gmd:role", "CI_RoleCode", role)


def _date(parent, when: datetime, kind: str):
    cdate = _el(_el(parent, "gmd:date"), "gmd:CI_Date")
    _text(cdate, "gmd:date", when.date().isoformat(), "gco:Date")
    _code(cdate, "gmd:dateType", "CI_DateTypeCode", kind)


def _root(file_identifier: str):
    root = etree.Element(_q("gmd:MD_Metadata"), nsmap=NS)
    root.set(_q("xsi:schemaLocation"), f"{NS['gmd']} http://schemas.opengis.net/iso/19139/20070417/gmd/gmd.xsd")
    _text(root, "gmd:fileIdentifier", file_identifier)
    _text(root, "gmd:language", "chi")
    _code(root, "gmd:characterSet", "MD_CharacterSetCode", "utf8")
    return root


def _contacts(parent, tag: str, layer: Layer | None, publisher: Publisher):
    custodian = layer.contact if layer else publisher.contact
    _party(parent, tag, custodian.organization.zh_TW, custodian, publisher, "custodian")
    _party(parent, tag, publisher.contact.organization.zh_TW, publisher.contact, publisher, "distributor")
    _party(parent, tag, custodian.organization.zh_TW, custodian, publisher, "originator")


def _standard(root, stamp: datetime):
    _text(root, "gmd:dateStamp", stamp.date().isoformat(), "gco:Date")
    _text(root, "gmd:metadataStandardName", "TWSMP")
    _text(root, "gmd:metadataStandardVersion", "2.0")


def _bbox(parent, extent: tuple[float, float, float, float]):
    box = _el(_el(_el(_el(parent, "gmd:extent"), "gmd:EX_Extent"), "gmd:geographicElement"),
              "gmd:EX_GeographicBoundingBox")
    west, south, east, north = extent
    for tag, value in (("westBoundLongitude", west), ("eastBoundLongitude", east),
                       ("southBoundLatitude", south), ("northBoundLatitude", north)):
        _text(box, f"gmd:{tag}", f"{value:.6f}", "gco:Decimal")


def _keywords(parent, words: list[str]):
    kw = _el(_el(parent, "gmd:descriptiveKeywords"), "gmd:MD_Keywords")
    for word in words:
        _text(kw, "gmd:keyword", word)


def _constraints(ident, layer: Layer):
    legal = _el(_el(ident, "gmd:resourceConstraints"), "gmd:MD_LegalConstraints")
    _code(legal, "gmd:accessConstraints", "MD_RestrictionCode", "otherRestrictions" if not layer.is_public else "license")
    _code(legal, "gmd:useConstraints", "MD_RestrictionCode", "license")
    terms = (f"{layer.license}（{layer.license_url}）；一般民眾自由瀏覽/自由下載。" if layer.is_public
             else "限授權機關同仁依公務使用，不得轉供他人。")
    _text(legal, "gmd:otherConstraints", terms)
    security = _el(_el(ident, "gmd:resourceConstraints"), "gmd:MD_SecurityConstraints")
    _code(security, "gmd:classification", "MD_ClassificationCode",
          "unclassified" if layer.access.level != "restricted" else "restricted")


def _crs_label(srid: int) -> str:
    return f"{CRS.from_epsg(srid).name} (EPSG:{srid})"


def dataset_record(facts: Facts, publisher: Publisher, base_url: str, pipeline_description: str | None) -> bytes:
    """The TWSMP record of one layer, as UTF-8 XML."""
    layer = facts.layer
    root = _root(file_identifier(layer))
    _contacts(root, "gmd:contact", layer, publisher)
    _standard(root, facts.revised)
    if layer.kind == "vector":
        vsr = _el(_el(root, "gmd:spatialRepresentationInfo"), "gmd:MD_VectorSpatialRepresentation")
        objects = _el(_el(vsr, "gmd:geometricObjects"), "gmd:MD_GeometricObjects")
        _code(objects, "gmd:geometricObjectType", "MD_GeometricObjectTypeCode", GEOMETRIC_OBJECTS[layer.geometry])
        if facts.feature_count is not None:
            _text(objects, "gmd:geometricObjectCount", facts.feature_count, "gco:Integer")
    rs = _el(_el(_el(_el(root, "gmd:referenceSystemInfo"), "gmd:MD_ReferenceSystem"), "gmd:referenceSystemIdentifier"),
             "gmd:RS_Identifier")
    _text(rs, "gmd:code", _crs_label(layer.srid))
    _text(rs, "gmd:codeSpace", "EPSG")

    ident = _el(_el(root, "gmd:identificationInfo"), "gmd:MD_DataIdentification")
    citation = _el(_el(ident, "gmd:citation"), "gmd:CI_Citation")
    _text(citation, "gmd:title", layer.title.zh_TW)
    _text(citation, "gmd:alternateTitle", layer.title.en)
    _date(citation, facts.created, "creation")
    _date(citation, facts.revised, "revision")
    _date(citation, facts.created, "publication")
    _text(citation, "gmd:edition", f"v{facts.version}")
    _text(ident, "gmd:abstract", f"{layer.description.zh_TW}\n{layer.description.en}")
    _text(ident, "gmd:purpose", f"提供{layer.title.zh_TW}圖資，供查詢、分析與加值應用。")
    _code(ident, "gmd:status", "MD_ProgressCode", "onGoing")
    _contacts(ident, "gmd:pointOfContact", layer, publisher)
    maintenance = _el(_el(ident, "gmd:resourceMaintenance"), "gmd:MD_MaintenanceInformation")
    _code(maintenance, "gmd:maintenanceAndUpdateFrequency", "MD_MaintenanceFrequencyCode", FREQUENCY[layer.update_frequency])
    _keywords(ident, [layer.title.zh_TW, *layer.keywords])
    _constraints(ident, layer)
    _code(ident, "gmd:spatialRepresentationType", "MD_SpatialRepresentationTypeCode",
          "vector" if layer.kind == "vector" else "grid")
    if layer.scale_denominator:
        fraction = _el(_el(_el(_el(ident, "gmd:spatialResolution"), "gmd:MD_Resolution"), "gmd:equivalentScale"),
                       "gmd:MD_RepresentativeFraction")
        _text(fraction, "gmd:denominator", layer.scale_denominator, "gco:Integer")
    _text(ident, "gmd:language", "chi")
    _code(ident, "gmd:characterSet", "MD_CharacterSetCode", "utf8")
    if layer.topic_category:
        _el(_el(ident, "gmd:topicCategory"), "gmd:MD_TopicCategoryCode", layer.topic_category)
    _bbox(ident, facts.extent)

    _distribution(root, layer, publisher, base_url)
    _quality(root, facts, pipeline_description)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _distribution(root, layer: Layer, publisher: Publisher, base_url: str):
    dist = _el(_el(root, "gmd:distributionInfo"), "gmd:MD_Distribution")
    items = distributions(layer, base_url)
    for d in items:
        fmt = _el(_el(dist, "gmd:distributionFormat"), "gmd:MD_Format")
        _text(fmt, "gmd:name", d.iso_name)
        _text(fmt, "gmd:version", d.iso_version)
    distributor = _el(_el(dist, "gmd:distributor"), "gmd:MD_Distributor")
    _party(distributor, "gmd:distributorContact", publisher.contact.organization.zh_TW, publisher.contact, publisher,
           "distributor", base_url)
    order = _el(_el(distributor, "gmd:distributionOrderProcess"), "gmd:MD_StandardOrderProcess")
    _text(order, "gmd:fees", "免費" if layer.is_public else "免費（限授權機關）")
    _text(order, "gmd:orderingInstructions", "無" if layer.is_public else "以機關 API 金鑰存取")
    transfer = _el(_el(dist, "gmd:transferOptions"), "gmd:MD_DigitalTransferOptions")
    for d in items:
        online = _el(_el(transfer, "gmd:onLine"), "gmd:CI_OnlineResource")
        _el(_el(online, "gmd:linkage"), "gmd:URL", d.url)
        _text(online, "gmd:protocol", "WWW:DOWNLOAD-1.0-http--download" if d.download else "WWW:LINK-1.0-http--link")
        _text(online, "gmd:name", d.title)
        _text(online, "gmd:description", d.media_type)
        _code(online, "gmd:function", "CI_OnLineFunctionCode", "download" if d.download else "information")


def _quality(root, facts: Facts, pipeline_description: str | None):
    dq = _el(_el(root, "gmd:dataQualityInfo"), "gmd:DQ_DataQuality")
    scope = _el(_el(dq, "gmd:scope"), "gmd:DQ_Scope")
    _code(scope, "gmd:level", "MD_ScopeCode", "dataset")
    q = facts.quality
    if q:
        run = facts.runs[0] if facts.runs else None
        checked = run.finished_at if run else facts.revised
        _report(dq, "DQ_TopologicalConsistency", "幾何檢查", "載入前檢查每筆幾何之有效性，無效者修復、空幾何移除。",
                f"讀入 {q.get('read', 0)} 筆；修復無效幾何 {q.get('repaired_geometries', 0)} 筆；"
                f"移除空幾何 {q.get('dropped_empty_geometries', 0)} 筆。", True, checked)
        _report(dq, "DQ_CompletenessOmission", "必要欄位、型別與範圍檢查",
                "必要欄位不得為空、數值欄位須可轉換、座標須位於臺中市範圍內；不合格者拒收。",
                f"拒收 {q.get('rejected_rows', 0)} 筆。", q.get("rejected_rows", 0) == 0, checked)
        _report(dq, "DQ_CompletenessCommission", "識別碼唯一性檢查", "自然鍵（識別碼）不得重複；重複者不予載入。",
                f"重複識別碼 {q.get('duplicate_keys', 0)} 筆。", q.get("duplicate_keys", 0) == 0, checked)
        _report(dq, "DQ_AbsoluteExternalPositionalAccuracy", "坐標系統與範圍檢查",
                f"來源坐標依宣告之坐標系統轉換至 {_crs_label(facts.layer.srid)}（TWD67 經 EPSG:15487，不接受概略轉換），"
                "且須位於臺中市範圍內；不符者整批拒收。", "全數位於臺中市範圍內。", True, checked)
    lineage = _el(_el(dq, "gmd:lineage"), "gmd:LI_Lineage")
    steps = "；".join(f"v{r.version}：{r.finished_at:%Y-%m-%d} 由 {r.operator} 載入 {r.source_name}"
                     f"{f'（SHA-256 {r.source_sha256[:16]}）' if r.source_sha256 else ''}" for r in facts.runs)
    _text(lineage, "gmd:statement",
          f"{pipeline_description or ''} 以 geocloud ETL 流程（讀取、驗證、暫存、與現行版本比對、原子發布）載入"
          f"PostGIS。{steps}。".strip())
    for r in facts.runs:
        step = _el(_el(lineage, "gmd:processStep"), "gmd:LI_ProcessStep")
        _text(step, "gmd:description", f"ETL 執行 #{r.id}（{r.pipeline}）：載入 {r.source_name}，發布為版本 v{r.version}")
        _text(step, "gmd:dateTime", r.finished_at.isoformat(timespec="seconds"), "gco:DateTime")


def _report(dq, kind: str, name: str, description: str, explanation: str, passed: bool, when: datetime):
    report = _el(_el(dq, "gmd:report"), f"gmd:{kind}")
    _text(report, "gmd:nameOfMeasure", name)
    _text(report, "gmd:measureDescription", description)
    result = _el(_el(report, "gmd:result"), "gmd:DQ_ConformanceResult")
    spec = _el(_el(result, "gmd:specification"), "gmd:CI_Citation")
    _text(spec, "gmd:title", name)
    _date(spec, when, "publication")
    _text(result, "gmd:explanation", explanation)
    _text(result, "gmd:pass", "true" if passed else "false", "gco:Boolean")


def service_record(service: str, layers: list[Layer], publisher: Publisher, base_url: str, stamp: datetime,
                   extent: tuple[float, float, float, float] | None) -> bytes:
    """ISO 19119 service metadata for the OGC API or the WMTS, coupled to the layers' dataset records."""
    title, service_type, path, _ = SERVICES[service]
    root = _root(f"{publisher.org_code}-geocloud-{service}")
    _code(root, "gmd:hierarchyLevel", "MD_ScopeCode", "service")
    _contacts(root, "gmd:contact", None, publisher)
    _standard(root, stamp)
    ident = _el(_el(root, "gmd:identificationInfo"), "srv:SV_ServiceIdentification")
    citation = _el(_el(ident, "gmd:citation"), "gmd:CI_Citation")
    _text(citation, "gmd:title", f"{publisher.name.zh_TW}圖資雲 {title}")
    _date(citation, stamp, "revision")
    _text(ident, "gmd:abstract", f"{publisher.name.zh_TW}以 {title} 提供之圖資服務，含 {len(layers)} 個圖層。")
    _contacts(ident, "gmd:pointOfContact", None, publisher)
    _keywords(ident, [title, *[layer.title.zh_TW for layer in layers]])
    _el(_el(ident, "srv:serviceType"), "gco:LocalName", service_type)
    if extent:
        ext = _el(ident, "srv:extent")
        box = _el(_el(_el(ext, "gmd:EX_Extent"), "gmd:geographicElement"), "gmd:EX_GeographicBoundingBox")
        for tag, value in zip(("westBoundLongitude", "southBoundLatitude", "eastBoundLongitude", "northBoundLatitude"),
                              extent):
            _text(box, f"gmd:{tag}", f"{value:.6f}", "gco:Decimal")
    _el(_el(ident, "srv:couplingType"), "srv:SV_CouplingType", "tight",
        codeList=f"{CODELISTS}#SV_CouplingType", codeListValue="tight")
    operation = _el(_el(ident, "srv:containsOperations"), "srv:SV_OperationMetadata")
    _text(operation, "srv:operationName", "GetCapabilities" if service == "wmts" else "landingPage")
    _el(_el(operation, "srv:DCP"), "srv:DCPList", "WebServices", codeList=f"{CODELISTS}#DCPList", codeListValue="WebServices")
    online = _el(_el(operation, "srv:connectPoint"), "gmd:CI_OnlineResource")
    _el(_el(online, "gmd:linkage"), "gmd:URL", base_url.rstrip("/") + path)
    for layer in layers:
        _el(ident, "srv:operatesOn", uuidref=file_identifier(layer), xlink_href=f"{base_url.rstrip('/')}/metadata/{layer.id}.xml",
            xlink_title=layer.title.zh_TW)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
