"""ETL: load the city's base maps from their real source formats into PostGIS, safely.

read -> validate -> stage -> diff against live -> publish atomically -> roll back on demand.
"""

from geocloud.etl.run import Progress, Report, rollback_layer, run_pipeline

__all__ = ["Progress", "Report", "rollback_layer", "run_pipeline"]
