"""Run a function over a sequence on a thread pool, several items at once, results in input order.

Batches of a source are read, decoded and checked independently, so they can be prepared on every
core; what depends on order (duplicate keys, the quality report's first rows, COPY) then happens
in source order on the caller's thread. GDAL, GEOS, PROJ and Arrow release the GIL while they work.
"""

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# the cores this process may run on (a container's cpuset, not the host's count), at most four
WORKERS = max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 4))


def in_order(fn: Callable[[T], R], items: Iterable[T], workers: int = WORKERS) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` threads, at most two items per worker in flight (bounded
    memory). An exception is raised where its item comes in order; the items after it are dropped."""
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="geocloud-prepare") as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
