"""Background threads a worker process starts once, on first use (audit writer, rate counter)."""

import threading

_started: dict[str, threading.Thread] = {}
_lock = threading.Lock()


def ensure(name: str, target) -> None:
    if name not in _started:
        with _lock:
            if name not in _started:
                thread = threading.Thread(target=target, name=name, daemon=True)
                thread.start()
                _started[name] = thread


def running(name: str) -> bool:
    return name in _started
