"""A WSGI application that does nothing, for `python -m bench pos --ceiling`.

It reads the request body and answers 201 with a fixed JSON body of the size of
a real purchase's answer (about 1 KB) and the same headers. Served by the same
gunicorn set-up and driven by the same clients as the API, it measures what
gunicorn, the network and the benchmark's clients cost a request when neither
Django nor any code of ours runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

BODY = (
    b'{"id":"00000000-0000-0000-0000-000000000000","status":"completed","padding":"'
    + b"x" * 980
    + b'"}'
)
HEADERS = [
    ("Content-Type", "application/json"),
    ("Allow", "POST, OPTIONS"),
    ("X-Frame-Options", "DENY"),
    ("Content-Length", str(len(BODY))),
    ("Vary", "Accept-Language"),
    ("Content-Language", "ru"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
]


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("201 Created", HEADERS)
    return [BODY]
