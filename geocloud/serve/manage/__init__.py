"""The management API (``/manage``): agencies register, load, publish, roll back and retire their own
layers over HTTP, through the same registry and ETL as the CLI, behind the one guard.

- ``permission``: who may do what to which layer (401/403/404), and errors as problem details;
- ``upload``: a source file streamed to disk under a size limit, its format checked;
- ``routes``: the handlers, each audited;
- ``openapi``: their OpenAPI path items.
"""

from geocloud.serve.manage.routes import routes

__all__ = ["routes"]
