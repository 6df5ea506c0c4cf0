"""The project's Celery app plus a test-only task, for tests that start a real worker."""

from __future__ import annotations

from pathlib import Path

from loyalty_site.celery import app

__all__ = ["app"]


@app.task(name="tests.touch")
def touch(path: str, text: str = "done") -> None:
    Path(path).write_text(text)
