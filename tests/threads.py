"""Work started in threads at one moment, each thread on its own database connection."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connections


def all_at_once(calls: list[Callable[[], Any]], slots: int | None = None) -> list[Any]:
    """Run the calls in threads released together; their results, in order.

    An exception becomes the result "error: <type>: <message>", so an assertion on the
    results names what went wrong. `slots` caps how many run (and hold a connection)
    at a time, for a server shared with other test runs.
    """
    start = threading.Event()
    gate = threading.BoundedSemaphore(slots or len(calls) or 1)
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        start.wait()
        with gate:
            try:
                results[i] = calls[i]()
            except Exception as exc:
                results[i] = f"error: {type(exc).__name__}: {exc}"
            finally:
                connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    start.set()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a thread hung (deadlock?)"
    return results
