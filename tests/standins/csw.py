"""pycsw, run locally as a real CSW 2.0.2 server with transactions (CSW-T), standing in for TGOS.

pycsw lives in its own virtual environment (``scripts/dev test`` makes it; GEOCLOUD_TEST_PYCSW
names its Python). The catalogue is an SQLite file in a temporary folder. ``gzip_compresslevel``
stays unset: pycsw 2.6 sends the uncompressed Content-Length with a gzipped body.
"""

import os
import subprocess
import time
from pathlib import Path

import httpx

CONFIG = """[server]
home={home}
url=http://127.0.0.1:{port}/csw
mimetype=application/xml; charset=UTF-8
encoding=UTF-8
language=zh-TW
maxrecords=100
loglevel=WARNING
logfile={home}/pycsw.log
pretty_print=true
domainquerytype=list
domaincounts=false
profiles=apiso

[manager]
transactions=true
allowed_ips=127.0.0.1
csw_harvest_pagesize=10

[metadata:main]
identification_title=TGOS stand-in
identification_abstract=pycsw standing in for the TGOS catalogue in geocloud's tests
identification_keywords=TGOS
identification_keywords_type=theme
identification_fees=None
identification_accessconstraints=None
provider_name=geocloud tests
provider_url=http://127.0.0.1/
contact_name=tests
contact_position=tests
contact_address=-
contact_city=-
contact_stateorprovince=-
contact_postalcode=-
contact_country=-
contact_phone=-
contact_fax=-
contact_email=tests@example.org
contact_url=http://127.0.0.1/
contact_hours=-
contact_instructions=-
contact_role=pointOfContact

[repository]
database=sqlite:///{home}/records.db
table=records

[metadata:inspire]
enabled=false
languages_supported=eng
default_language=eng
date=2026-01-01
gemet_keywords=Utility and governmental services
conformity_service=notEvaluated
contact_name=tests
contact_email=tests@example.org
temp_extent=2026-01-01/2026-12-31
"""


def pycsw_python() -> Path | None:
    default = Path(__file__).resolve().parents[2] / ".geocloud" / "pycsw-venv" / "bin" / "python"
    path = Path(os.environ.get("GEOCLOUD_TEST_PYCSW", default))
    return path if path.exists() else None


class PyCSW:
    def __init__(self, home: Path, port: int):
        python = pycsw_python()
        if python is None:
            raise RuntimeError("pycsw is not installed; `scripts/dev test` installs it into .geocloud/pycsw-venv")
        self.url = f"http://127.0.0.1:{port}/csw"
        config = home / "pycsw.cfg"
        config.write_text(CONFIG.format(home=home, port=port), encoding="utf-8")
        subprocess.run([str(python), str(python.parent / "pycsw-admin.py"), "-c", "setup_db", "-f", str(config)],
                       check=True, capture_output=True, cwd=home)
        self.log = (home / "server.log").open("wb")
        self.proc = subprocess.Popen([str(python), "-m", "pycsw.wsgi", str(port)], cwd=home, stdout=self.log,
                                     stderr=subprocess.STDOUT, env={**os.environ, "PYCSW_CONFIG": str(config)})
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.url, params={"service": "CSW", "request": "GetCapabilities"}, timeout=2).is_success:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pycsw did not start: {(home / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()
