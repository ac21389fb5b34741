"""Serving: one ASGI application for OGC API Features and downloads (tiles come with their issue)."""

from geocloud.serve.app import create_app

__all__ = ["create_app"]
