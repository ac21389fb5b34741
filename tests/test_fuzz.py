"""Schemathesis over the whole OpenAPI document of the served sample city, anonymous and with a key:
every surface the document describes (features, tiles, WMTS, geocoding, downloads, metadata, styles,
tokens, rasters), which is every route the app serves (tests/test_api.py holds it to that).

A bounded, seeded run (EXAMPLES cases per operation, coverage and fuzzing phases) of the real
``st`` command against the real server: no server error, no response the document does not
describe (status, media type, schema), and invalid input refused. The figures (requests,
operations, failures) are printed and recorded as test properties (JUnit XML) for the release notes.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ST = Path(sys.executable).with_name("st")
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
          "negative_data_rejection")
EXAMPLES = 8  # per operation: the document grew from 63 to 100+ operations (12 took three minutes)
SEED = 13


def fuzz(url: str, report: Path, headers: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess, dict]:
    # one worker: hypothesis describes strategies with ast.parse, which CPython 3.11 does not make
    # safe across threads ("AST constructor recursion depth mismatch")
    cmd = [str(ST), "run", f"{url}/openapi?f=json", "--checks", CHECKS, "--max-examples", str(EXAMPLES),
           "--seed", str(SEED), "--phases", "coverage,fuzzing", "--workers", "1", "--no-shrink",
           "--request-timeout", "30", "--report", "json", "--report-json-path", str(report)]
    for header in headers:
        cmd += ["--header", header]
    # run in the test's folder: schemathesis keeps its state (.schemathesis/) in the working directory
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=report.parent)
    assert report.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(report.read_text(encoding="utf-8"))


@pytest.mark.parametrize("who", ["anonymous", "key"])
def test_openapi_document_holds_under_fuzzing(served, tmp_path, who, record_property):
    log = served.data_dir / "server.log"
    before = log.read_text(encoding="utf-8", errors="replace").count("Traceback")
    headers = (f"X-API-Key: {served.keys['fire']}",) if who == "key" else ()
    proc, report = fuzz(served.url, tmp_path / "report.json", headers)
    cases, ops = report["test_cases"], report["operations"]
    figures = {"caller": who, "requests": cases["generated"], "operations": ops["tested"],
               "failures": cases["with_failures"], "errors": len(report["errors"]),
               "seconds": round(report["running_time"], 1)}
    print(f"schemathesis figures: {json.dumps(figures)}")
    for name, value in figures.items():
        record_property(f"fuzz_{name}", value)
    assert report["failures"] == [] and report["errors"] == [] and cases["with_failures"] == 0, proc.stdout[-6000:]
    assert report["exit_code"] == 0 and report["complete"], proc.stdout[-6000:]
    # every operation of the document was exercised (sample city: 101 anonymous; the inspector's key
    # also reads the restricted layers: 115; before the rasters are described)
    assert ops["errored"] == 0 and ops["tested"] == ops["selected"] >= (95 if who == "anonymous" else 105)
    assert cases["generated"] >= 20 * ops["tested"]
    after = log.read_text(encoding="utf-8", errors="replace").count("Traceback")
    assert after == before, "a client's mistake logged a traceback"
