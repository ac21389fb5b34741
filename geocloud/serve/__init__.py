"""Serving: one ASGI application (``geocloud.serve.app.create_app``) for every surface.

The package itself imports nothing, so a command that needs one light module of it (the live
state, the tile cache) does not import the whole server stack (pygeoapi, titiler, the portal)."""
