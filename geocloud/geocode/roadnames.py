"""A misspelt road name corrected against the road names of the live 門牌 layer.

People type one wrong character in a road name (進工路 for 進化路, 忠健路 for 忠明路); no exact or
nearest-number step can match a road the layer does not hold. The layer's road names (a few
thousand for all of Taichung) are read once per live version of the layer and kept in the process
(keyed on the table's oid, which a publish or rollback changes, so every worker follows a new
version on its own), and rapidfuzz finds those one edit away. The matcher then tries the query's
address on each of them and keeps the best (see ``match.match``).
"""

import threading
from dataclasses import dataclass

from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

MAX_EDITS = 1   # one wrong, missing or extra character; two would turn most three-character roads into any other
MIN_LENGTH = 3  # a two-character road (中路) is too short to correct: one edit is half of it

_lock = threading.Lock()
_cache: dict = {}  # the table's oid -> Roads, for the live version only


# The distinct road names by a loose index scan of the (road, number_value) index: one probe a name,
# so a few thousand probes for all of Taichung instead of reading 1.3 million rows.
_DISTINCT_ROADS = """
    WITH RECURSIVE r(road) AS (
        SELECT min(road) FROM live.addresses
        UNION ALL
        SELECT (SELECT min(a.road) FROM live.addresses a WHERE a.road > r.road) FROM r WHERE r.road IS NOT NULL)
    SELECT road FROM r WHERE road IS NOT NULL"""


@dataclass(frozen=True)
class Roads:
    """The road names of one live version of the address layer."""

    names: frozenset[str]
    choices: tuple[str, ...]  # the same, in order

    def near(self, road: str) -> list[str]:
        """The road names one edit from ``road``, closest first; none when ``road`` itself is a road
        of the layer or too short to correct safely."""
        if road in self.names or len(road) < MIN_LENGTH:
            return []
        found = process.extract(road, self.choices, scorer=Levenshtein.distance, score_cutoff=MAX_EDITS, limit=None)
        return [name for name, _, _ in sorted(found, key=lambda f: (f[1], f[0]))]


def latest() -> Roads | None:
    """The road names this process read last (no round trip; the live layer may have changed since)."""
    with _lock:
        return next(iter(_cache.values()), None)


def current(conn) -> Roads:
    """The live layer's road names: one catalog look-up of the table's oid, and a read of the names
    when it changed since this process last read them."""
    oid = conn.execute("SELECT to_regclass('live.addresses')::oid").fetchone()[0]
    with _lock:
        if oid in _cache:
            return _cache[oid]
    names = [r[0] for r in conn.execute(_DISTINCT_ROADS)] if oid else []
    roads = Roads(frozenset(names), tuple(names))
    with _lock:
        _cache.clear()
        _cache[oid] = roads
    return roads
