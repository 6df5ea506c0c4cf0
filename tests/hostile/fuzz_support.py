"""What the schemathesis tests share: the served schema, its links, the checks, and the world.

The schema is fetched from `/api/v1/schema/` through the WSGI application, the
way a client generator would read it; requests go through the same
application, in the test's database transaction.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from schemathesis.config import SchemathesisConfig

from portal.services import app_session_start
from tests.hostile.factories import World

# A fixed seed: CI explores the same cases on every run, and a failure reproduces.
SEED = int(os.environ.get("HOSTILE_FUZZ_SEED", "20261123"))
# Examples per operation and state-machine scenarios; raise them to search harder locally
# (HOSTILE_FUZZ_EXAMPLES=200 HOSTILE_STATEFUL_EXAMPLES=200 pytest tests/hostile -k fuzz).
FUZZ_EXAMPLES = int(os.environ.get("HOSTILE_FUZZ_EXAMPLES", "8"))
STATEFUL_EXAMPLES = int(os.environ.get("HOSTILE_STATEFUL_EXAMPLES", "12"))
STATEFUL_STEPS = int(os.environ.get("HOSTILE_STATEFUL_STEPS", "6"))

# What must hold for every answer: never a 5xx, a status the operation documents,
# JSON where JSON is promised, and a body and headers that match the schema.
# Not checked here: whether the API accepts every schema-valid request (the schema
# cannot say "exactly one of card or phone") - the table tests cover refusals.
CHECKS = {
    "enabled": False,
    "not_a_server_error": {"enabled": True},
    "status_code_conformance": {"enabled": True},
    "content_type_conformance": {"enabled": True},
    "response_schema_conformance": {"enabled": True},
    "response_headers_conformance": {"enabled": True},
}


def config(*, stateful: bool = False) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "checks": CHECKS,
            "generation": {
                # Valid and invalid input both: a hostile client sends either.
                "mode": "positive" if stateful else "all",
                "max-examples": FUZZ_EXAMPLES,
                "database": "none",
                # The tests send real credentials; the fuzzer does not invent its own.
                "with-security-parameters": False,
            },
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": stateful, "max-steps": STATEFUL_STEPS},
            },
        }
    )


def schema_load() -> Any:
    return schemathesis.openapi.from_wsgi(
        "/api/v1/schema/", get_wsgi_application(), config=config()
    )


# What a linked purchase sends: a receipt that usually succeeds, numbered by the member's id
# so each member's first purchase is new and a second one tests the duplicate rules.
_LINKED_RECEIPT = {
    "receipt_number": "$response.body#/id",
    "lines": [{"sku": "A1", "category": "food", "quantity": "2", "price": "150.00"}],
    "redeem_points": "max",
}
_WHOLE_BODY = {"x-schemathesis": {"merge_body": False}}


def links_add(raw: dict[str, Any]) -> dict[str, Any]:
    """The served schema plus the OpenAPI links of the till's journey.

    schemathesis infers purchase -> confirm/cancel/refund and member -> member
    reads from the ids on its own; what it cannot guess is that the member a
    till just enrolled (or looked up) is the one it sells to.
    """
    raw = copy.deepcopy(raw)
    paths = raw["paths"]

    def link(path: str, method: str, status: str, name: str, definition: dict[str, Any]) -> None:
        response = paths[path][method]["responses"][status]
        response.setdefault("links", {})[name] = {**definition, **_WHOLE_BODY}

    member = {"member": {"id": "$response.body#/id"}}
    for path, method, status in (
        ("/api/v1/members", "post", "201"),
        ("/api/v1/members/lookup", "get", "200"),
        ("/api/v1/members/{member_id}", "get", "200"),
    ):
        for operation_id, extra in (
            ("purchases_create", {"commit": True}),
            ("purchases_create", {"commit": False}),
            ("purchases_quote", {}),
        ):
            name = f"{operation_id}_{'hold' if extra.get('commit') is False else 'now'}"
            link(
                path,
                method,
                status,
                name,
                {
                    "operationId": operation_id,
                    "requestBody": {**member, **_LINKED_RECEIPT, **extra},
                },
            )
    link(
        "/api/v1/purchases",
        "post",
        "201",
        "refund_all",
        {
            "operationId": "refunds_create",
            "parameters": {"purchase_id": "$response.body#/id"},
            "requestBody": {"refund_number": "RF-1"},
        },
    )
    return raw


def linked_schema_load() -> Any:
    base = schema_load()
    linked = schemathesis.openapi.from_dict(
        links_add(base.raw_schema), config=config(stateful=True)
    )
    linked.app = base.app
    linked.location = base.location
    return linked


def auth_header(world: World, path: str) -> str:
    """The terminal key for the cashier API; a fresh member token for /api/v1/me/."""
    if path.startswith("/api/v1/me/"):
        # A new token each time: the fuzzer may well sign the last one out.
        return f"Bearer {app_session_start(member=world.member, ip='127.0.0.1').access_token}"
    return f"Token {world.till.key}"


@contextmanager
def in_process_requests() -> Iterator[None]:
    """Keep the test's database connection through WSGI calls, as Django's test client does.

    The WSGI handler closes "obsolete" connections at the start and end of each
    request; inside the test's transaction that would close the connection the
    test itself is using.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
