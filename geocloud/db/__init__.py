"""PostGIS access: connections, migrations and the schemas live / staging / history / geocloud."""

from geocloud.db.connect import connect, transaction
from geocloud.db.migrate import status, upgrade

__all__ = ["connect", "status", "transaction", "upgrade"]
