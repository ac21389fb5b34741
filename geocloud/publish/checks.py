"""The open-data quality check, run against the live server before anything is pushed.

For each distribution, what data.gov.tw's quality system checks: the link answers (linkable), it is
a file rather than a page (downloadable), the format is structured (structure), the declared
UTF-8 is the real encoding (encoding_match), and a CSV's columns equal the field description, in
order (desc_match); for the layer, that a CSV is offered (csv). Gold needs every one. Platinum
adds that every described field follows a government data standard (the catalog's
``standard`` per field). Downloads are read only as far as the check needs.
"""

import codecs
import csv
import io
import zipfile
from dataclasses import dataclass, field

import httpx

from geocloud.catalog import Layer
from geocloud.publish.distributions import STRUCTURED, Distribution, described_columns, distributions, field_description

PEEK = 256 * 1024  # bytes read of a download to check its encoding and header
FLAGS = ("linkable", "downloadable", "structure", "encoding_match", "desc_match")


@dataclass
class Result:
    distribution: Distribution
    flags: dict[str, bool] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def fail(self, flag: str, problem: str) -> None:
        self.flags[flag] = False
        self.problems.append(f"{flag}: {problem}")

    def unreachable(self, problem: str) -> "Result":
        """A link that does not answer fails every check: nothing behind it could be examined."""
        self.fail("linkable", problem)
        self.flags.update(dict.fromkeys(FLAGS, False))
        return self


@dataclass
class Report:
    layer: str
    results: list[Result]
    csv: bool
    standards: list[str]           # described fields without a government data standard name
    mark: str                      # "platinum", "gold" or "below gold"

    @property
    def problems(self) -> list[str]:
        out = [f"{r.distribution.format} {r.distribution.url}: {p}" for r in self.results for p in r.problems]
        if not self.csv:
            out.append("csv: no CSV distribution is offered")
        return out

    def as_dict(self) -> dict:
        return {"layer": self.layer, "mark": self.mark, "csv": self.csv,
                "fields_without_standard": self.standards,
                "distributions": [{"format": r.distribution.format, "url": r.distribution.url, **r.flags,
                                   "problems": r.problems} for r in self.results]}


def _peek(response: httpx.Response) -> bytes:
    data = bytearray()
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) >= PEEK:
            break
    return bytes(data)


def _utf8(data: bytes, truncated: bool) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(data, final=not truncated)  # a cut at the PEEK limit may split one character
        return True
    except UnicodeDecodeError:
        return False


def _check_shapefile(result: Result, data: bytes) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        result.fail("structure", "the SHP download is not a zip archive")
        return
    names = {n.rsplit(".", 1)[-1].lower(): n for n in archive.namelist()}
    missing = [ext for ext in ("shp", "shx", "dbf", "prj", "cpg") if ext not in names]
    if missing:
        result.fail("structure", f"the archive lacks .{', .'.join(missing)}")
    if "cpg" in names and archive.read(names["cpg"]).strip().upper() not in (b"UTF-8", b"UTF8"):
        result.fail("encoding_match", f".cpg declares {archive.read(names['cpg']).strip().decode(errors='replace')!r}, not UTF-8")


def check_distribution(client: httpx.Client, layer: Layer, d: Distribution) -> Result:
    result = Result(d, {flag: True for flag in FLAGS})
    try:
        with client.stream("GET", d.url) as response:
            if response.status_code != 200:
                return result.unreachable(f"answered HTTP {response.status_code}")
            media = response.headers.get("content-type", "")
            disposition = response.headers.get("content-disposition", "")
            data = _peek(response)
            truncated = len(data) >= PEEK
    except httpx.HTTPError as exc:
        return result.unreachable(f"no answer ({exc.__class__.__name__}: {exc})")
    if d.download and ("text/html" in media or "attachment" not in disposition):
        result.fail("downloadable", f"a page ({media or 'no content type'}), not a file download")
    if d.format not in STRUCTURED and d.download:
        result.fail("structure", f"{d.format} is not a structured, machine-readable format")
    if d.format == "SHP":
        _check_shapefile(result, data)
    elif not _utf8(data, truncated):
        result.fail("encoding_match", "declared UTF-8, but the content is not valid UTF-8 (Big5?)")
    if d.format == "CSV" and result.flags["encoding_match"]:
        text = data.decode("utf-8", errors="ignore").lstrip("\ufeff")
        header = next(csv.reader(io.StringIO(text)), [])
        described = described_columns(field_description(layer))
        if header != described:
            result.fail("desc_match", f"CSV columns {header} differ from the field description {described}")
    return result


def check(layer: Layer, base_url: str, *, timeout: float = 30.0, headers: dict | None = None) -> Report:
    """Fetch every distribution of ``layer`` from the server at ``base_url`` and grade them."""
    items = distributions(layer, base_url)
    with httpx.Client(timeout=timeout, headers=headers, follow_redirects=True) as client:
        results = [check_distribution(client, layer, d) for d in items]
    has_csv = any(r.distribution.format == "CSV" and all(r.flags.values()) for r in results)
    gold = has_csv and all(all(r.flags.values()) for r in results)
    unmapped = [f.name for f in layer.fields if not f.standard]
    mark = "platinum" if gold and not unmapped else "gold" if gold else "below gold"
    return Report(layer.id, results, has_csv, unmapped, mark)
