"""The management API (``/manage``): agencies register, load, publish, roll back and retire their own
layers over HTTP, through the same registry and ETL as the CLI, behind the one guard.

- ``permission``: who may do what to which layer (401/403/404), and errors as problem details;
- ``acting``: what every action shares (working as the caller, problem details, the audit);
- ``upload``: a source file streamed to disk under a size limit, its format checked;
- ``loads``: a source through the ETL (200 with the report, or 202 and its run's URL);
- ``routes``: the catalog entry's handlers and the route list;
- ``openapi``: their OpenAPI path items.
"""

from geocloud.serve.manage.routes import routes

__all__ = ["routes"]
