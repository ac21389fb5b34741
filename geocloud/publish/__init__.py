"""Publishing: TWSMP metadata, TGOS (CSW-T), data.gov.tw, DCAT and the open-data quality check.

Reads the catalog and the live tables; never writes to them. What was pushed where is kept in
``geocloud.publications`` so that an ETL publish or rollback shows up as a stale push.
"""

from geocloud.publish.checks import check
from geocloud.publish.push import Outcome, pending, push_datagov, push_tgos, record_of
from geocloud.publish.records import status

__all__ = ["Outcome", "check", "pending", "push_datagov", "push_tgos", "record_of", "status"]
