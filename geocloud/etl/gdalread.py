"""What GDAL said while reading one batch of records, collected per read and per thread.

GDAL does not stop at a record it cannot read: a shapefile record past the end of a truncated
.shp, a damaged GeoPackage page or a GeoJSON point with one coordinate each give a ``CPLError``
(a failure or a warning) and the reader goes on, handing over the feature without its geometry or
ending the layer early. Inside an Arrow stream these reach no caller: pyogrio checks for errors
only around the calls it makes itself. So each read is wrapped here:

- failures: pyogrio's ``capture_errors`` stacks them for the calling thread (GDAL's error handlers
  are per thread, so batches read side by side on a thread pool each see their own);
- warnings: pyogrio turns them into Python ``RuntimeWarning``s, attributed to the frame that made
  the read, i.e. this module. The warnings machinery is process-wide, so one routing session,
  shared by every thread reading at the time, hands each to the list of the thread that raised it.

A warning counts like a failure, except those saying GDAL kept the record as written (``ACCEPTED``),
which the ETL then repairs and reports itself (an unclosed ring).
"""

import re
import threading
import warnings
from collections.abc import Callable

from pyogrio._err import _ERROR_STACK, capture_errors

ACCEPTED = ("Non closed ring detected",)  # GDAL read the geometry as written; prepare repairs it
_lock = threading.Lock()
_local = threading.local()
_session: dict = {"readers": 0, "context": None, "show": None}


def read(call: Callable):
    """``(result, exception, messages)`` of ``call()``: its result (None at the end of a stream), the
    exception it raised, and what GDAL reported while it ran that means a record was not read as
    written (failures first, then warnings)."""
    _join()
    _local.said = said = []
    result = failure = None
    try:
        with capture_errors():  # its handler is popped only when the block ends normally
            try:
                result = call()
            except StopIteration:
                pass
            except Exception as exc:  # noqa: BLE001 - handed to the caller
                failure = exc
            failures = [str(e) for e in _ERROR_STACK.get()]
    finally:
        _local.said = None
        _leave()
    return result, failure, failures + said


def _route(message, category, filename, lineno, file=None, line=None):
    said = getattr(_local, "said", None)
    if said is not None and category is RuntimeWarning and filename == __file__:
        if not str(message).startswith(ACCEPTED):
            said.append(str(message))
        return
    # Another thread's catch_warnings may have saved this hook while a read ran and put it back
    # after the session ended: then warnings go to Python's own display.
    (_session["show"] or warnings._showwarning_orig)(message, category, filename, lineno, file, line)


def _join() -> None:
    with _lock:
        if _session["readers"] == 0:
            context = warnings.catch_warnings()
            context.__enter__()
            # every time, not once per place: the same warning in the next run must be seen too
            warnings.filterwarnings("always", category=RuntimeWarning, module=re.escape(__name__))
            _session.update(context=context, show=warnings.showwarning)
            warnings.showwarning = _route
        _session["readers"] += 1


def _leave() -> None:
    with _lock:
        _session["readers"] -= 1
        if _session["readers"] == 0:
            _session["context"].__exit__(None, None, None)
            _session.update(context=None, show=None)
