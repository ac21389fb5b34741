"""Which text encoding a source uses: UTF-8 or Big5 (CP950), told apart from evidence, not guessed.

Shapefiles: the ``.cpg`` file first, then the DBF language-driver byte (0x4F / 0x78 mean Big5),
then a strict decode of every DBF record. CSV: a BOM, then a strict decode of the whole file.
A decode failure names the row and field, so the operator knows where the file goes wrong.
"""

import codecs
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from geocloud.errors import InputError

BIG5_LDIDS = {0x4F: "Big5 (LDID 79)", 0x78: "Big5 (LDID 120)"}
CPG_NAMES = {"950": "cp950", "cp950": "cp950", "big5": "cp950", "utf-8": "utf-8", "utf8": "utf-8",
             "65001": "utf-8"}
ENCODING_LABEL = {"utf-8": "UTF-8", "cp950": "Big5 (CP950)"}


@dataclass(frozen=True)
class Encoding:
    codec: str      # "utf-8" or "cp950"
    evidence: str   # how it was decided, for the run report

    @property
    def label(self) -> str:
        return ENCODING_LABEL.get(self.codec, self.codec)


@dataclass(frozen=True)
class DbfLayout:
    records: int
    header_len: int
    record_len: int
    ldid: int
    fields: list[tuple[str, str, int]]  # (raw name bytes decoded leniently, type, length)


def dbf_layout(dbf: bytes, size: int, where: str) -> DbfLayout:
    """The header of a DBF (``dbf`` holds its first bytes, ``size`` is the whole file's size)."""
    if size < 32:
        raise InputError("the .dbf file is truncated (shorter than its 32-byte header)", where=where,
                         fix="deliver the complete shapefile (.shp, .shx, .dbf, .prj)")
    records, header_len, record_len = struct.unpack("<IHH", dbf[4:12])
    fields, pos = [], 32
    while pos + 32 <= header_len and dbf[pos] != 0x0D:
        raw = dbf[pos:pos + 11].split(b"\0", 1)[0]
        fields.append((raw.decode("utf-8", "replace"), chr(dbf[pos + 11]), dbf[pos + 16]))
        pos += 32
    expected = header_len + records * record_len
    if size < expected:
        raise InputError(
            f"the .dbf file is truncated: its header promises {records} records ({expected} bytes) "
            f"but the file has {size} bytes", where=where, fix="deliver the complete, uncorrupted file")
    return DbfLayout(records, header_len, record_len, dbf[29], fields)


def _dbf_position(layout: DbfLayout, offset: int) -> tuple[int, str]:
    """(1-based row, field name) of a byte offset inside the DBF record area."""
    row, within = divmod(offset, layout.record_len)
    within -= 1  # deletion flag
    for name, _, length in layout.fields:
        if within < length:
            return row + 1, name
        within -= length
    return row + 1, "?"


def _records(dbf, layout: DbfLayout, chunk_records: int = 65_536):
    """(first record offset in bytes, record bytes) chunks of the record area, record-aligned."""
    step = chunk_records * layout.record_len
    total = layout.records * layout.record_len
    for start in range(0, total, step):
        yield start, dbf(layout.header_len + start, min(step, total - start))


def decode_error(layout: DbfLayout, dbf, codec: str) -> tuple[int, str, bytes] | None:
    """The first (row, field, bad bytes) that ``codec`` cannot decode, or None."""
    for start, chunk in _records(dbf, layout):
        try:
            chunk.decode(codec)
        except UnicodeDecodeError as exc:
            row, field = _dbf_position(layout, start + exc.start)
            return row, field, chunk[exc.start:exc.start + 4]
    return None


def shapefile_encoding(dbf, cpg: str | None, forced: str, where: str) -> Encoding:
    """``dbf(offset, size)`` reads bytes of the .dbf file, so that big files are checked in chunks."""
    layout = dbf_layout(dbf(0, 32 * 256 + 34), dbf.size, where)
    if forced != "auto":
        bad = decode_error(layout, dbf, forced)
        if bad:
            row, field, raw = bad
            other = "cp950" if forced == "utf-8" else "utf-8"
            looks = f"; it decodes as {ENCODING_LABEL[other]}" if decode_error(layout, dbf, other) is None else ""
            raise InputError(
                f"row {row}, field {field!r}: bytes {raw!r} are not valid {ENCODING_LABEL[forced]}{looks}",
                where=where,
                fix=f"set source.encoding to {other!r} (or 'auto') in the pipeline file, or fix the .cpg",
            )
        return Encoding(forced, "set by the pipeline")
    if cpg is not None:
        codec = CPG_NAMES.get(cpg.strip().lower())
        if codec:
            return Encoding(codec, f".cpg says {cpg.strip()!r}")
    if layout.ldid in BIG5_LDIDS:
        return Encoding("cp950", f"DBF language driver {BIG5_LDIDS[layout.ldid]}")
    if decode_error(layout, dbf, "utf-8") is None:
        return Encoding("utf-8", "detected: every record is valid UTF-8")
    bad = decode_error(layout, dbf, "cp950")
    if bad is None:
        return Encoding("cp950", "detected: not UTF-8, every record is valid Big5 (CP950)")
    row, field, raw = bad
    raise InputError(f"row {row}, field {field!r}: bytes {raw!r} are neither UTF-8 nor Big5", where=where,
                     fix="re-export the file as UTF-8 with a .cpg file")


def text_encoding(path: Path, forced: str) -> Encoding:
    """Encoding of a CSV file, checked over the whole file in chunks (bounded memory)."""
    with path.open("rb") as fh:
        head = fh.read(3)
    if forced == "auto" and head == codecs.BOM_UTF8:
        candidates, evidence = ["utf-8"], "UTF-8 byte-order mark"
    elif forced == "auto":
        candidates, evidence = ["utf-8", "cp950"], "detected"
    else:
        candidates, evidence = [forced], "set by the pipeline"
    failure = None
    for codec in candidates:
        failure = _first_bad_line(path, codec)
        if failure is None:
            return Encoding(codec, evidence if evidence != "detected" else f"detected: valid {ENCODING_LABEL[codec]}")
    line, raw = failure
    if forced != "auto":
        raise InputError(f"line {line}: bytes {raw!r} are not valid {ENCODING_LABEL[forced]}", where=str(path),
                         fix="set source.encoding to 'auto' in the pipeline file, or re-save the file as UTF-8")
    raise InputError(f"line {line}: bytes {raw!r} are neither UTF-8 nor Big5", where=str(path),
                     fix="re-save the file as UTF-8")


def _first_bad_line(path: Path, codec: str) -> tuple[int, bytes] | None:
    decoder = codecs.getincrementaldecoder(codec)()
    lines = 1
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                return lines + chunk.count(b"\n", 0, max(exc.start, 0)), chunk[max(exc.start, 0):exc.start + 4]
            lines += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return lines, b""
    return None


# GDAL recodes DBF text one string at a time: through iconv, opening a converter for each call, for
# Big5 (about 0.5 s per text column per million rows), and even from ISO-8859-1 it spends 1.1-1.3 s
# per million buildings read on their own (a lookup of the encodings' names, a new string a value).
# With the Shapefile driver's ENCODING open option empty it recodes nothing: the DBF's bytes reach
# the Arrow batch as they are (typed as text, though they are not UTF-8) and are decoded here, one
# call per column. pyogrio then reads field names as ISO-8859-1, which keeps every byte.
RAW_TEXT = {"ENCODING": ""}


def decode_name(name: str, read_as: str, codec: str) -> str:
    """A field name of a file read with RAW_TEXT, which pyogrio decoded as ``read_as``."""
    return name.encode(read_as).decode(codec, "replace")


def decode_raw(arr: pa.Array, codec: str) -> pa.Array:
    """A text column read with RAW_TEXT (the file's bytes), decoded as ``codec``. Undecodable bytes
    become U+FFFD, which the validation reports with their rows and field."""
    raw = arr.view(pa.binary())
    offsets = np.frombuffer(raw.buffers()[1], dtype=np.int32)[raw.offset: raw.offset + len(raw) + 1]
    data = np.frombuffer(raw.buffers()[2] or b"", dtype=np.uint8)[offsets[0]:offsets[-1]]
    if not len(data) or data.max() < 0x80:  # ASCII is UTF-8 already
        return arr
    # one decode for the whole column: values joined by NUL, which Big5 never uses in a character
    n = len(raw)
    joined = np.insert(data, offsets[1:] - offsets[0], 0)
    utf8 = np.frombuffer(joined.tobytes().decode(codec, "replace").encode("utf-8"), dtype=np.uint8)
    seps = np.flatnonzero(utf8 == 0)
    new_offsets = np.concatenate(([0], seps - np.arange(n))).astype(np.int32)
    decoded = pa.StringArray.from_buffers(n, pa.py_buffer(new_offsets), pa.py_buffer(np.delete(utf8, seps)))
    return decoded if not arr.null_count else pc.if_else(arr.is_valid(), decoded, pa.scalar(None, pa.string()))
