"""Finding layers: keyword search in zh-TW or English (any part of a word) with filters by owner
agency, topic, kind and access level, over exactly the layers the caller may read.

Each layer's searchable text (titles, descriptions, keywords, field titles, owner and id, both
languages, case-folded) is built once per catalog version; a search is then substring tests over a
few hundred short strings, well under a millisecond for 500 layers. Chinese has no spaces between
words, so substrings (分區 in 都市計畫使用分區) are what "partial words" must mean; every term of
the query must occur.
"""

from dataclasses import dataclass

from geocloud.catalog import Catalog, Layer

FILTERS = ("agency", "topic", "kind", "access")


@dataclass(frozen=True)
class Entry:
    layer: Layer
    owner: str | None      # the owner agency's code
    text: str               # everything searchable, case-folded
    titles: str             # the titles alone, case-folded (a title match ranks first)


def owner_agency(catalog: Catalog, layer: Layer) -> str | None:
    """The agency that supplies the layer: the registered owner of an agency layer; for a core
    layer the agency its contact organization names (the GIS office keeps it, the bureau supplies
    it), else the GIS office."""
    if layer.id in catalog.registered:
        return catalog.owner(layer.id)
    for code, agency in catalog.agencies.items():
        if agency.name.zh_TW == layer.contact.organization.zh_TW:
            return code
    return catalog.gis_office


def _entry(catalog: Catalog, layer: Layer) -> Entry:
    owner = owner_agency(catalog, layer)
    agency = catalog.agencies.get(owner) if owner else None
    parts = [layer.id, layer.title.zh_TW, layer.title.en, layer.description.zh_TW, layer.description.en,
             *layer.keywords, layer.contact.organization.zh_TW, layer.contact.organization.en,
             *((agency.name.zh_TW, agency.name.en) if agency else ()),
             *(t for f in layer.fields for t in (f.name, f.title.zh_TW, f.title.en, f.standard or ""))]
    return Entry(layer, owner, "\n".join(parts).casefold(), f"{layer.title.zh_TW}\n{layer.title.en}".casefold())


_index: tuple[Catalog | None, dict[str, Entry]] = (None, {})


def index(catalog: Catalog) -> dict[str, Entry]:
    """The entries of every catalog layer, by id (rebuilt when the catalog object changes)."""
    global _index
    built_for, entries = _index
    if built_for is not catalog:
        entries = {i: _entry(catalog, layer) for i, layer in catalog.layers.items()}
        _index = (catalog, entries)
    return entries


def facet_value(entry: Entry, name: str) -> str | None:
    layer = entry.layer
    return {"agency": entry.owner, "topic": layer.topic_category, "kind": layer.kind,
            "access": layer.access.level}[name]


def search(entries: list[Entry], q: str, filters: dict[str, str]) -> list[Entry]:
    """The entries matching every term of ``q`` and every filter, title matches first, then by id."""
    terms = q.casefold().split()
    found = [e for e in entries if all(t in e.text for t in terms)
             and all(facet_value(e, k) == v for k, v in filters.items() if v)]
    return sorted(found, key=lambda e: (not all(t in e.titles for t in terms), e.layer.id))


def facets(entries: list[Entry]) -> dict[str, dict[str, int]]:
    """For each filter, the values the given (visible) entries have and how many have each."""
    out: dict[str, dict[str, int]] = {name: {} for name in FILTERS}
    for e in entries:
        for name in FILTERS:
            value = facet_value(e, name)
            if value is not None:
                out[name][value] = out[name].get(value, 0) + 1
    return out
