"""``geocloud backup verify``: is a backup whole, without restoring it?

Checks the manifest's form, every listed file's presence, size and SHA-256, and that pg_restore
can read the dump's table of contents. Every problem found is named (file and what is wrong), not
just the first.
"""

from pathlib import Path

from geocloud.backup import pgtools
from geocloud.backup.manifest import DUMP, BackupDamaged, read, sha256
from geocloud.errors import DatabaseError


def verify(folder: Path) -> dict:
    """The backup's manifest, once every check passed; BackupDamaged listing each problem otherwise."""
    manifest = read(folder)
    problems, root = [], folder.resolve()
    for item in manifest["files"]:
        path = folder / item["path"]
        if path.is_symlink() or not path.resolve().is_relative_to(root):
            problems.append(f"{item['path']}: a link, or under one, leading out of the backup (a backup holds "
                            "files only; a restore must not read elsewhere)")
        elif not path.is_file():
            problems.append(f"{item['path']}: missing")
        elif (size := path.stat().st_size) != item["size"]:
            problems.append(f"{item['path']}: {size} bytes, the manifest says {item['size']}")
        elif sha256(path) != item["sha256"]:
            problems.append(f"{item['path']}: SHA-256 differs from the manifest's (the file's bytes changed)")
    if not problems:  # a damaged dump's table of contents may still read: the checksum comes first
        try:
            pgtools.run(pg_restore(manifest), ["--list", str(folder / DUMP)])
        except DatabaseError as exc:
            problems.append(f"{DUMP}: pg_restore cannot read it ({exc.what})")
    if problems:
        raise BackupDamaged(f"{len(problems)} problem(s):\n  - " + "\n  - ".join(problems), where=str(folder),
                            fix="do not restore from this copy: use another copy of the backup, or take a new one")
    return manifest


def pg_restore(manifest: dict) -> Path:
    """A pg_restore that reads the dump: of the version of the pg_dump that wrote it, or newer."""
    return pgtools.find_tool("pg_restore", manifest["postgresql"]["pg_dump_major"])
