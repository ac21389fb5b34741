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
start their workers at once.
"""

import gc
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import forkserver
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# the cores this process may run on (a container's cpuset, not the host's count), at most four
WORKERS = max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 4))
PRELOAD = ["geocloud.etl.preload"]  # what every worker process needs, imported once by the fork server


def start_processes() -> None:
    """Start the fork server now (it imports the ETL's modules, about a second), so that it is ready
    by the time the first batch is submitted; does nothing once it runs."""
    forkserver.set_forkserver_preload(PRELOAD)
    forkserver.ensure_running()


def _worker_started() -> None:
    """A worker process collects no reference cycles: a batch's objects (a Python object per
    geometry, Arrow and numpy arrays) are freed by their reference counts, and the cycle collector,
    set off by every 700 new objects, spent a tenth of a worker's time walking the live geometries.
    A worker lives for one run."""
    gc.disable()


def in_order(fn: Callable[[T], R], items: Iterable[T], processes: bool = False,
             workers: int = WORKERS) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` threads, or worker processes (then ``fn``, the items and the
    results must pickle), at most two items per worker in flight (bounded memory). An exception is
    raised where its item comes in order; the items after it are dropped.

    With processes, the first ``workers`` items still go to threads: the processes are ready only
    once the fork server has imported the ETL's modules and forked them (a second or more, while
    this process would wait for its first result)."""
    pending: deque[Future] = deque()
    threads = ThreadPoolExecutor(workers, thread_name_prefix="geocloud-prepare")
    if processes:
        start_processes()
    others = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"),
                                 initializer=_worker_started) if processes else threads
    try:
        for number, item in enumerate(items):
            pending.append((threads if number < workers else others).submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for executor in {threads, others}:
            executor.shutdown(wait=True, cancel_futures=True)
