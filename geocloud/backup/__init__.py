"""Backups of a geocloud installation, and their verification and restore.

A backup is a folder: ``database.dump`` (pg_dump's custom format, the platform's schemas), ``data/``
(the COGs of every kept raster version and the ETL run reports, copied from the data directory) and
``manifest.json`` (versions, who and when, every file's size and SHA-256), written last, so that a
folder without a manifest is a backup that did not finish. The tile cache is not backed up: it is
derived, and rebuilt on demand.
"""

from geocloud.backup.create import create
from geocloud.backup.restore import restore
from geocloud.backup.verify import verify

__all__ = ["create", "restore", "verify"]
