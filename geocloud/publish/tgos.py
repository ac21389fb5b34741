"""TGOS: push TWSMP records to its CSW 2.0.2 catalogue by CSW-T, and build the download bundle.

TGOS catalogues are CSW. A record whose fileIdentifier the catalogue already holds is replaced
(Transaction/Update), otherwise inserted (Transaction/Insert); the transaction summary must
confirm it before the push is recorded. The bundle is what TGOS offers for download: the UTF-8
Shapefile exactly as the server distributes it (``.cpg`` and ``.prj`` included) plus the record.
"""

import io
import zipfile
from pathlib import Path

import httpx
import requests
from lxml import etree
from owslib import ows
from owslib.catalogue.csw2 import CatalogueServiceWeb

from geocloud.errors import PortalError
from geocloud.publish.retry import Transient, retrying

GMD = "http://www.isotc211.org/2005/gmd"
CSW = "http://www.opengis.net/cat/csw/2.0.2"


class Catalogue:
    def __init__(self, url: str, *, username: str | None, password: str | None, timeout: float, retries: int,
                 backoff: float):
        self.url, self.retries, self.backoff = url, retries, backoff
        self.csw = CatalogueServiceWeb(url, skip_caps=True, timeout=timeout, username=username, password=password)

    def _call(self, what: str, fn, *args, **kwargs):
        def attempt():
            try:
                fn(*args, **kwargs)
            except ows.ExceptionReport as exc:
                raise PortalError(f"TGOS CSW at {self.url} refused {what}: {exc}",
                                  fix="correct what the catalogue names and push again; nothing was recorded as pushed")
            except (requests.RequestException, etree.XMLSyntaxError, RuntimeError) as exc:
                raise Transient(f"{exc.__class__.__name__}: {str(exc)[:300]}") from None
        retrying(attempt, f"TGOS CSW at {self.url}: {what}", self.retries, self.backoff)

    def holds(self, file_identifier: str) -> bool:
        self._call(f"GetRecordById {file_identifier}", self.csw.getrecordbyid, [file_identifier], outputschema=GMD)
        return file_identifier in self.csw.records

    def push(self, file_identifier: str, record: bytes) -> str:
        """Insert or update one record; returns "insert" or "update" once the catalogue confirmed it."""
        action = "update" if self.holds(file_identifier) else "insert"
        self._call(f"Transaction/{action} of {file_identifier}", self.csw.transaction, ttype=action,
                   typename="gmd:MD_Metadata", record=record)
        summary = _summary(self.csw.response)
        if summary.get(f"total{action.capitalize()}ed", summary.get(f"total{action.capitalize()}d")) != 1:
            raise PortalError(f"TGOS CSW at {self.url} did not confirm the {action} of {file_identifier}: "
                              f"its transaction summary says {summary or 'nothing'}",
                              fix="check the catalogue's transaction settings; nothing was recorded as pushed")
        return action


def _summary(response: bytes) -> dict[str, int]:
    """The counts of a csw:TransactionSummary (read here: OWSLib 0.35 looks for it one level too deep)."""
    root = etree.fromstring(response)
    counts = root.find(f"{{{CSW}}}TransactionSummary")
    if counts is None:
        return {}
    return {etree.QName(child).localname: int(child.text) for child in counts if child.text and child.text.isdigit()}


def bundle(shapefile_url: str, record: bytes, target: Path, layer_id: str, *, timeout: float) -> Path:
    """The TGOS download bundle: the served UTF-8 Shapefile's parts plus the TWSMP XML, in one zip."""
    try:
        response = httpx.get(shapefile_url, timeout=timeout)
    except httpx.HTTPError as exc:
        raise PortalError(f"cannot fetch the Shapefile download {shapefile_url}: {exc}",
                          fix="start the server (geocloud serve) or set GEOCLOUD_PUBLIC_URL to where it runs") from None
    if response.status_code != 200:
        raise PortalError(f"the Shapefile download {shapefile_url} answered HTTP {response.status_code}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with zipfile.ZipFile(io.BytesIO(response.content)) as shp, zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as out:
        for name in shp.namelist():
            out.writestr(name, shp.read(name))
        out.writestr(f"{layer_id}.xml", record)
    partial.replace(target)
    return target
