"""The GIS office's review of an agency's public layer, with its audit record, in one transaction:
``geocloud layers review`` and ``POST /manage/layers/{id}/review`` both decide through ``review``.
The registry (catalog) keeps the decision and the audit trail (access) records it; access may call
on the catalog but not the other way round, so the two meet here."""

import psycopg

from geocloud.access import audit
from geocloud.catalog import registry


def review(conn: psycopg.Connection, layer_id: str, decision: str, comment: str, operator: str,
           agency: str | None = None, surface: str | None = None) -> dict:
    """``registry.review``'s decision and its ``layer-reviewed`` record (``agency`` and ``surface``:
    the reviewer's and where it was made, as ``audit.record`` takes them), both or neither. Returns
    the layer as it stands."""
    with conn.transaction():
        was, after = registry.review(conn, layer_id, decision, comment, operator)
        audit.record(conn, "layer-reviewed", operator, agency, layer_id, surface,
                     {"before": {"state": was}, "after": {"state": after["state"], "review": after["review"]}})
    return after
