"""ETL: load the city's base maps from their real source formats into PostGIS, safely.

read -> validate -> stage -> diff against live -> publish atomically -> roll back on demand.

The run's names are imported on first use: the worker processes that prepare a big source's
batches import ``geocloud.etl.prepare`` and what it needs, not the run's database machinery.
"""

import importlib

__all__ = ["Progress", "Report", "rollback_layer", "run_pipeline"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("geocloud.etl.run"), name)
    raise AttributeError(f"module 'geocloud.etl' has no attribute {name!r}")
