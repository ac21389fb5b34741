"""Retrying a request to a publishing target while its failures are transient."""

import time

from geocloud.errors import PortalError


class Transient(Exception):
    """A failure worth retrying (no answer, a timeout, a 5xx); ``wait`` is the target's own hint."""

    def __init__(self, problem: str, wait: float | None = None):
        super().__init__(problem)
        self.wait = wait


def retrying(attempt, what: str, retries: int, backoff: float):
    """``attempt()`` until it returns, at most ``retries`` times, waiting ``backoff`` seconds and
    doubling; after the last transient failure, a PortalError naming it. Other errors pass through."""
    wait = backoff
    for number in range(1, max(1, retries) + 1):
        try:
            return attempt()
        except Transient as exc:
            if number >= retries:
                raise PortalError(f"{what} failed after {number} attempts: {exc}",
                                  fix="nothing was recorded as pushed; retry later with the same command") from None
            time.sleep(max(wait, exc.wait or 0))
            wait *= 2
