"""rfc3987-syntax, built when first used instead of when imported (tests only).

The test extra's cyclonedx-bom brings jsonschema's ``format-nongpl`` checkers, and ``jsonschema._format``
imports rfc3987-syntax, which compiles some 35 Earley parsers at import: 3-8 s of CPU in every
geocloud server and command a test starts (pygeoapi imports jsonschema), for a format nothing of
geocloud's checks. The production image installs neither. conftest.py puts this folder first on the
path of the tests and of what they start; the real package's modules are reached through
``__path__``, so a check that does run (scripts/sbom.py's validation) gets the real checker."""

import importlib.machinery
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent.parent
_real = importlib.machinery.PathFinder.find_spec(
    __name__, [p for p in sys.path if p and Path(p).resolve() != _HERE])
if _real is None:
    raise ImportError("rfc3987_syntax is not installed")
__path__.extend(_real.submodule_search_locations)


def is_valid_syntax(term: str, value: str) -> bool:
    from .syntax_helpers import is_valid_syntax as real

    return real(term, value)


def __getattr__(name: str):
    from . import syntax_helpers

    return getattr(syntax_helpers, name)
