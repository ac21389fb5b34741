#!/usr/bin/env python3
"""geocloud's software bill of materials: one CycloneDX 1.6 JSON document listing every Python
distribution of the environment the server runs in (``cyclonedx-py environment``) and the viewer's
npm packages (``npm sbom``), with their dependency graph under geocloud as the root component.
The city reports these components to the government's vulnerability notification system (VANS).

    scripts/dev sbom [-o FILE]                     # this checkout's .venv and npm packages
    python scripts/sbom.py [--python PY] [--npm-sbom FILE] [-o FILE]

``--python`` names the interpreter whose environment is listed (default: the one running this);
``--npm-sbom`` takes an npm SBOM made elsewhere (the Dockerfile's node stage) instead of running
npm here. The result is checked against the CycloneDX schema (strict) before it is written.
Needs the cyclonedx-bom package (PyPI) in the interpreter running this script, and npm >= 10.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = "1.6"


def python_bom(python: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "cyclonedx_py", "environment", "--of", "JSON", "--sv", SPEC,
                           "--output-reproducible", "--no-validate", "--pyproject", str(ROOT / "pyproject.toml"),
                           "-o", "-", python], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"sbom: cyclonedx-py could not list the Python environment of {python}:\n{done.stderr}")
    return json.loads(done.stdout)


def npm_bom() -> dict:
    done = subprocess.run(["npm", "sbom", "--sbom-format", "cyclonedx", "--omit", "dev", "--package-lock-only"],
                          cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"sbom: npm sbom failed (npm >= 10 and package-lock.json are needed):\n{done.stderr}")
    return json.loads(done.stdout)


def merge(python: dict, npm: dict) -> dict:
    """The Python BOM with the npm components and dependencies added; npm's root (the viewer's
    package.json) becomes geocloud's own root component."""
    root = python["metadata"]["component"]["bom-ref"]
    refs = {c["bom-ref"] for c in python["components"]}
    rename = {npm["metadata"]["component"]["bom-ref"]: root}
    for component in npm.get("components", []):
        if component["bom-ref"] in refs:  # never happens with npm's name@version and Python's name==version
            rename[component["bom-ref"]] = f"npm:{component['bom-ref']}"
            component["bom-ref"] = rename[component["bom-ref"]]
        python["components"].append(component)
    graph = {d["ref"]: list(d.get("dependsOn", [])) for d in python.get("dependencies", [])}
    for dep in npm.get("dependencies", []):
        ref = rename.get(dep["ref"], dep["ref"])
        graph.setdefault(ref, [])
        graph[ref] += [rename.get(x, x) for x in dep.get("dependsOn", []) if rename.get(x, x) not in graph[ref]]
    python["dependencies"] = [{"ref": ref, "dependsOn": sorted(on)} for ref, on in sorted(graph.items())]
    return python


def problems(bom: dict) -> list[str]:
    """Where ``bom`` breaks the CycloneDX JSON schema (strict: no unknown properties). Formats are
    checked too, except IRIs: that check parses each URL with an Earley parser (0.1 s a URL)."""
    from jsonschema import FormatChecker
    from jsonschema.validators import Draft7Validator
    from referencing import Registry
    from referencing.jsonschema import DRAFT7

    from cyclonedx.schema import SchemaVersion
    from cyclonedx.schema._res import BOM_JSON_STRICT, CRYPTOGRAPHY_DEFS, JSF, SPDX_JSON  # the schemas it ships

    def resource(path):
        return DRAFT7.create_resource(json.loads(Path(path).read_text(encoding="utf-8")))
    base = "http://cyclonedx.org/schema/"
    registry = Registry().with_resources([(f"{base}spdx.SNAPSHOT.schema.json", resource(SPDX_JSON)),
                                          (f"{base}cryptography-defs.SNAPSHOT.schema.json", resource(CRYPTOGRAPHY_DEFS)),
                                          (f"{base}jsf-0.82.SNAPSHOT.schema.json", resource(JSF))])
    schema = json.loads(Path(BOM_JSON_STRICT[SchemaVersion.from_version(bom["specVersion"])]).read_text(encoding="utf-8"))
    formats = FormatChecker([f for f in FormatChecker.checkers if f not in ("iri", "iri-reference")])
    validator = Draft7Validator(schema, registry=registry, format_checker=formats)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(bom)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter whose environment is listed")
    parser.add_argument("--npm-sbom", type=Path, help="an npm CycloneDX SBOM to use instead of running npm")
    parser.add_argument("-o", "--output", default="-", help="file to write (default: standard output)")
    args = parser.parse_args()
    npm = json.loads(args.npm_sbom.read_text(encoding="utf-8")) if args.npm_sbom else npm_bom()
    bom = merge(python_bom(args.python), npm)
    found = problems(bom)
    if found:
        sys.exit("sbom: the merged document is not valid CycloneDX:\n  " + "\n  ".join(found[:20]))
    text = json.dumps(bom, indent=2, ensure_ascii=False) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"sbom: {len(bom['components'])} components written to {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
