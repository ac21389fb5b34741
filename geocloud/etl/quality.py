"""The quality report every run writes: counts, and each issue with its rows.

Errors reject the row; warnings keep it. Each issue keeps its total count and the first rows it
was seen on, so a report stays small even when a million rows share one problem.
"""

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

SAMPLE_ROWS = 20


@dataclass
class Issue:
    severity: str   # "error" rejects the row, "warning" keeps it
    message: str
    count: int = 0
    rows: list[int] = field(default_factory=list)


@dataclass
class Quality:
    read: int = 0
    loaded: Counter = field(default_factory=Counter)
    repaired: int = 0
    dropped_empty: int = 0
    rejected: int = 0
    duplicates: int = 0
    skipped_codes: Counter = field(default_factory=Counter)
    issues: dict[str, Issue] = field(default_factory=dict)

    def note(self, severity: str, message: str, rows: np.ndarray) -> None:
        """Record ``message`` for ``rows`` (1-based source row numbers)."""
        if len(rows) == 0:
            return
        issue = self.issues.setdefault(message, Issue(severity, message))
        issue.count += len(rows)
        room = SAMPLE_ROWS - len(issue.rows)
        if room > 0:
            issue.rows.extend(int(r) for r in rows[:room])

    def merge(self, other: "Quality") -> None:
        """Add a batch's own report (batches are checked on several threads, merged in source order)."""
        self.read += other.read
        self.loaded.update(other.loaded)
        self.repaired += other.repaired
        self.dropped_empty += other.dropped_empty
        self.rejected += other.rejected
        self.duplicates += other.duplicates
        self.skipped_codes.update(other.skipped_codes)
        for issue in other.issues.values():
            mine = self.issues.setdefault(issue.message, Issue(issue.severity, issue.message))
            mine.count += issue.count
            mine.rows.extend(issue.rows[:SAMPLE_ROWS - len(mine.rows)])

    def note_file(self, severity: str, message: str) -> None:
        """Record an issue of the whole file rather than of some rows."""
        self.issues.setdefault(message, Issue(severity, message, count=1))

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues.values() if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues.values() if i.severity == "warning"]

    def as_dict(self) -> dict:
        return {
            "read": self.read,
            "loaded": dict(self.loaded),
            "repaired_geometries": self.repaired,
            "dropped_empty_geometries": self.dropped_empty,
            "rejected_rows": self.rejected,
            "duplicate_keys": self.duplicates,
            "skipped_feature_codes": dict(self.skipped_codes),
            "issues": [vars(i) for i in self.issues.values()],
        }
