"""Names the portal shows for the catalog's codes, in zh-TW and English."""

# ISO 19115 MD_TopicCategoryCode (the catalog's topic_category), as TGOS names them in Chinese
TOPICS = {
    "farming": ("農業", "Farming"), "biota": ("生物", "Biota"), "boundaries": ("行政界線", "Boundaries"),
    "climatologyMeteorologyAtmosphere": ("氣候氣象", "Climatology, meteorology, atmosphere"),
    "economy": ("經濟", "Economy"), "elevation": ("地形高程", "Elevation"), "environment": ("環境", "Environment"),
    "geoscientificInformation": ("地球科學", "Geoscientific information"), "health": ("衛生", "Health"),
    "imageryBaseMapsEarthCover": ("影像底圖", "Imagery, base maps, earth cover"),
    "intelligenceMilitary": ("軍事情報", "Intelligence, military"), "inlandWaters": ("內陸水域", "Inland waters"),
    "location": ("位置", "Location"), "oceans": ("海洋", "Oceans"),
    "planningCadastre": ("規劃地籍", "Planning, cadastre"), "society": ("社會", "Society"),
    "structure": ("建物設施", "Structure"), "transportation": ("交通", "Transportation"),
    "utilitiesCommunication": ("公用事業通訊", "Utilities, communication"),
}
FREQUENCIES = {"daily": ("每日", "Daily"), "weekly": ("每週", "Weekly"), "monthly": ("每月", "Monthly"),
               "quarterly": ("每季", "Quarterly"), "yearly": ("每年", "Yearly"), "irregular": ("不定期", "Irregular")}
LEVELS = {"public": ("公開", "Public"), "internal": ("市府內部", "City agencies"),
          "restricted": ("限制存取", "Restricted")}
KINDS = {"vector": ("向量", "Vector"), "raster": ("網格影像", "Raster")}


def facet_label(name: str, value: str, _, catalog) -> str:
    """What the page shows for a filter's value (an agency code, topic, kind or access level)."""
    if name == "agency":
        agency = catalog.agencies.get(value)
        return agency.name.get(_.lang) if agency else value
    table = {"topic": TOPICS, "kind": KINDS, "access": LEVELS}[name]
    return _(*table[value]) if value in table else value
