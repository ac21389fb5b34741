"""Run a function over a sequence on several workers, several items at once, results in input order.

Batches of a source are read, decoded and checked independently, so they can be prepared on every
core; what depends on order (duplicate keys, the quality report's first rows, COPY) then happens
in source order on the caller's thread. GDAL, GEOS, PROJ and Arrow release the GIL while they work,
but a batch's preparation still holds it for much of its time (a Python object per geometry,
Arrow and numpy calls by the dozen), so threads of one process serialize: on a big source the
batches are prepared in worker processes instead, one per core, each holding its own GIL.

Worker processes come from a fork server (``multiprocessing``'s ``forkserver``) that imports the
ETL's modules once: forking the loader itself would copy locks other threads hold (the server runs
the ETL beside its request threads), and spawning each worker afresh would import numpy, Arrow,
GDAL and shapely in each. The fork server lives as long as the loader, so a server's later runs
start their workers at once. A run's workers are forked in the background as soon as it knows it
wants them (``Processes``), and get every batch, the first ones too: while the fork server still
imports, the loader preparing batches on its own threads would only take the core it needs (two
batches side by side on the loader's threads took a second; a worker takes 0.3 s for one).
Workers run at a lower priority than the loader and the database (``WORKER_NICENESS``): the COPY
into PostgreSQL, which the loader feeds, is what a run waits for at its end, and a server running
an upload keeps answering requests first.
"""

import contextlib
import gc
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import forkserver
from pathlib import Path
from typing import TypeVar

from geocloud.etl.files import source_files

T = TypeVar("T")
R = TypeVar("R")

# the cores this process may run on (a container's cpuset, not the host's count), at most four
WORKERS = max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 4))
PRELOAD = ["geocloud.etl.preload"]  # what every worker process needs, imported once by the fork server
# A vector source of this many bytes or more (about 280,000 buildings as a Shapefile) has its batches
# prepared in worker processes rather than threads: below it, starting them costs more than they save.
PROCESSES_FROM = 128 << 20
WORKER_NICENESS = 10


def big(path: Path) -> bool:
    """Whether the vector source at ``path`` is worth worker processes."""
    return sum(f.stat().st_size for f in source_files(path)) >= PROCESSES_FROM


def start_processes() -> None:
    """Start the fork server now (it imports the ETL's modules, about a second), so that it is ready
    by the time the first batch is submitted; does nothing once it runs."""
    forkserver.set_forkserver_preload(PRELOAD)
    forkserver.ensure_running()


def _worker_started() -> None:
    """A worker process collects no reference cycles: a batch's objects (a Python object per
    geometry, Arrow and numpy arrays) are freed by their reference counts, and the cycle collector,
    set off by every 700 new objects, spent a tenth of a worker's time walking the live geometries.
    A worker lives for one run, at ``WORKER_NICENESS``."""
    gc.disable()
    os.nice(WORKER_NICENESS)


class Processes:
    """A run's worker processes, forked in the background from the moment the run knows it wants them,
    while it opens its source. Closed by ``in_order`` when it ends, or by ``close`` if the run ends
    before."""

    def __init__(self, workers: int = WORKERS):
        start_processes()
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"),
                                        initializer=_worker_started)
        threading.Thread(target=self._fork, args=(workers,), name="geocloud-fork", daemon=True).start()

    def _fork(self, workers: int) -> None:
        # each submission waits for the fork server (its imports) to fork a worker; a pool that broke,
        # or that a run ending early closed, says so where the run submits its next batch, if any
        with contextlib.suppress(RuntimeError):
            for _ in range(workers):
                self.pool.submit(os.getpid)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def in_order(fn: Callable[[T], R], items: Iterable[T], processes: Processes | None = None,
             workers: int = WORKERS) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` threads, or on ``processes`` (then ``fn``, the items and the
    results must pickle), at most two items per worker in flight (bounded memory). An exception is
    raised where its item comes in order; the items after it are dropped."""
    pending: deque[Future] = deque()
    executor = ThreadPoolExecutor(workers, thread_name_prefix="geocloud-prepare") if processes is None \
        else processes.pool
    try:
        for item in items:
            pending.append(executor.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
