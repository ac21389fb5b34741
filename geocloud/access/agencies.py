"""Agencies in PostGIS, kept in step with the registry the catalog's grants name (agencies.yml)."""

import psycopg

from geocloud.access.audit import record_grant_changes
from geocloud.catalog import Catalog


def sync(conn: psycopg.Connection, catalog: Catalog, operator: str) -> int:
    """Add or update every agency of the registry; record catalog grant changes; return their count."""
    for a in catalog.agencies.values():
        add(conn, a.code, a.name.zh_TW, a.name.en, a.city_agency)
    return record_grant_changes(conn, catalog, operator)


def add(conn: psycopg.Connection, code: str, name_zh: str, name_en: str, city_agency: bool) -> None:
    conn.execute("INSERT INTO geocloud.agencies (code, name_zh, name_en, city_agency) VALUES (%s, %s, %s, %s) "
                 "ON CONFLICT (code) DO UPDATE SET name_zh = excluded.name_zh, name_en = excluded.name_en, "
                 "city_agency = excluded.city_agency, deleted_at = NULL", (code, name_zh, name_en, city_agency))
