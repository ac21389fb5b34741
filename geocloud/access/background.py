"""Background threads a worker process starts once, on first use (audit writer, rate counter).

They wait for the database while it is down (geocloud.db.pool.wait_while_down) instead of being
refused like requests: what they hold in memory is written once it is back."""

import threading

from geocloud.db.pool import wait_while_down

_started: dict[str, threading.Thread] = {}
_lock = threading.Lock()


def _patiently(target):
    def run():
        wait_while_down()
        target()
    return run


def ensure(name: str, target) -> None:
    if name not in _started:
        with _lock:
            if name not in _started:
                thread = threading.Thread(target=_patiently(target), name=name, daemon=True)
                thread.start()
                _started[name] = thread


def running(name: str) -> bool:
    return name in _started
