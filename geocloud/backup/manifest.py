"""The backup folder's layout, its manifest, and file checksums.

Every file of a backup (the dump and each data file) is listed in ``manifest.json`` with its size
and SHA-256, so that one flipped bit anywhere is found by ``geocloud backup verify`` before a
restore relies on it.
"""

import hashlib
import json
import os
from pathlib import Path

from geocloud.errors import GeocloudError

FORMAT = 1                    # the layout's version, raised when it changes incompatibly
MANIFEST = "manifest.json"
DUMP = "database.dump"
DATA = "data"                 # the data directory's files, under their paths relative to it
CHUNK = 1 << 20
FIELDS = {"format": int, "created_at": str, "created_by": dict, "geocloud_version": str, "postgresql": dict,
          "postgis": dict, "migration": int, "schemas": list, "layers": dict, "files": list}


class BackupDamaged(GeocloudError):
    """A backup is incomplete or damaged: a file missing, of the wrong size or checksum, a manifest
    that cannot be read, or a dump pg_restore cannot read."""

    exit_code = 11


def sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def copy_hashed(src: Path, dst: Path, private: bool = True) -> dict:
    """Copy ``src`` to ``dst``, hashing it on the way; its manifest entry but for the path. A backup's
    copies are ``private`` (mode 0600, folders 0700: a backup holds key hashes and the token-signing
    secret); a restore's follow the umask, as the ETL's own files do."""
    digest = hashlib.sha256()
    dst.parent.mkdir(parents=True, exist_ok=True, mode=0o700 if private else 0o777)
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o666)
    with src.open("rb") as fin, os.fdopen(fd, "wb") as fout:
        while block := fin.read(CHUNK):
            digest.update(block)
            fout.write(block)
    return {"size": dst.stat().st_size, "sha256": digest.hexdigest()}


def entry(folder: Path, relative: str) -> dict:
    path = folder / relative
    return {"path": relative, "size": path.stat().st_size, "sha256": sha256(path)}


def write(folder: Path, manifest: dict) -> None:
    """Write the manifest last and atomically: its presence means the backup is whole."""
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.chmod(0o600)
    tmp.rename(folder / MANIFEST)


def read(folder: Path) -> dict:
    """The manifest, checked for form; BackupDamaged naming what is wrong."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise BackupDamaged("no such backup folder", where=str(folder), fix="name the folder `geocloud backup create` wrote")
    if not path.is_file():
        raise BackupDamaged("the manifest is missing: the backup did not finish, or this is not a backup folder",
                            where=str(path), fix="use a complete backup, or take a new one")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackupDamaged(f"the manifest is not valid JSON ({exc})", where=str(path),
                            fix="the file is damaged: use another copy of the backup") from None
    if not isinstance(manifest, dict):
        raise BackupDamaged("the manifest is not a JSON object", where=str(path), fix="use another copy of the backup")
    for name, kind in FIELDS.items():
        if not isinstance(manifest.get(name), kind):
            raise BackupDamaged(f"the manifest's field {name!r} is missing or not a {kind.__name__}", where=str(path),
                                fix="the file is damaged: use another copy of the backup")
    for name in ("server_major", "pg_dump_major"):
        if not isinstance(manifest["postgresql"].get(name), int):
            raise BackupDamaged(f"the manifest's field postgresql.{name} is missing or not an int", where=str(path),
                                fix="the file is damaged: use another copy of the backup")
    if manifest["format"] != FORMAT:
        raise BackupDamaged(f"backup format {manifest['format']} is not the format this geocloud reads ({FORMAT})",
                            where=str(path), fix="restore it with the geocloud version named in the manifest")
    for i, item in enumerate(manifest["files"]):
        if not (isinstance(item, dict) and isinstance(item.get("path"), str) and isinstance(item.get("size"), int)
                and isinstance(item.get("sha256"), str)) or not _inside(item["path"]):
            raise BackupDamaged(f"the manifest's files[{i}] is not a {{path, size, sha256}} entry for the dump or a file under data/",
                                where=str(path), fix="the file is damaged: use another copy of the backup")
    if DUMP not in {item["path"] for item in manifest["files"]}:
        raise BackupDamaged(f"the manifest does not list {DUMP}", where=str(path), fix="use another copy of the backup")
    return manifest


def _inside(relative: str) -> bool:
    """The dump, or a path under data/ that stays there (a manifest never points a restore elsewhere)."""
    parts = Path(relative).parts
    return relative == DUMP or (len(parts) > 1 and parts[0] == DATA and ".." not in parts
                                and not Path(relative).is_absolute())
