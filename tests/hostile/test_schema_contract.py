"""The served schema describes the input the API accepts, so generated clients send valid requests.

schemathesis, asked to send only schema-valid requests, found the API refusing
them where the schema was looser than the validation: unknown fields (every
input serializer refuses them), an empty Idempotency-Key, an empty list of
lines, negative amounts. Each rule is checked here on the served schema.
What a schema cannot say (exactly one of `card` or `phone` in a lookup, a
real phone number) stays the validation's, and test_api_access covers it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    response = Client().get("/api/v1/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _objects(
    schema: dict[str, Any], node: Any, path: str, seen: set[str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object schema reachable from `node`, with a readable path to it."""
    if isinstance(node, dict) and "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        if name in seen:
            return
        seen.add(name)
        yield from _objects(schema, _resolve(schema, node), name, seen)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") == "object" or "properties" in node:
        yield path, node
    for key in ("allOf", "oneOf", "anyOf"):
        for i, part in enumerate(node.get(key, [])):
            yield from _objects(schema, part, f"{path}.{key}[{i}]", seen)
    for name, prop in (node.get("properties") or {}).items():
        yield from _objects(schema, prop, f"{path}.{name}", seen)
    if "items" in node:
        yield from _objects(schema, node["items"], f"{path}[]", seen)


def _request_bodies(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody")
            if body:
                yield f"{method.upper()} {path}", body["content"]["application/json"]["schema"]


def test_request_bodies_say_that_unknown_fields_are_refused(schema: dict[str, Any]) -> None:
    open_objects = [
        f"{operation}: {where}"
        for operation, body in _request_bodies(schema)
        for where, node in _objects(schema, body, operation, set())
        if node.get("additionalProperties") is not False
    ]
    assert open_objects == []


def test_request_amounts_and_quantities_are_never_negative(schema: dict[str, Any]) -> None:
    negative = [
        f"{operation}: {where}.{name}"
        for operation, body in _request_bodies(schema)
        for where, node in _objects(schema, body, operation, set())
        for name, prop in (node.get("properties") or {}).items()
        if prop.get("format") == "decimal" and prop.get("pattern", "").startswith("^-?")
    ]
    assert negative == []


def test_receipts_and_refunds_need_at_least_one_line(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    for name in ("QuoteInput", "PurchaseInput", "RefundInput"):
        assert components[name]["properties"]["lines"].get("minItems") == 1, name


def test_the_idempotency_key_is_one_to_255_printable_characters(schema: dict[str, Any]) -> None:
    headers = [
        (f"{method.upper()} {path}", parameter["schema"])
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "header" and parameter["name"] == "Idempotency-Key"
    ]
    assert len(headers) == 5  # enrol, purchase, confirm, cancel, refund
    for operation, header in headers:
        assert header.get("minLength") == 1 and header.get("maxLength") == 255, operation
        assert header.get("pattern"), operation  # no control characters


def test_every_change_may_answer_the_idempotency_refusals_as_its_schema_says(
    schema: dict[str, Any],
) -> None:
    """API.md: the same Idempotency-Key while the first call runs is 409 request_in_progress.

    That body has only `code` and `detail`, so every 409 schema of an operation that
    takes the key must accept it; so must its 422 (the key reused with another body or
    on another purchase), 429 throttled and 503 service_unavailable.
    """
    import jsonschema

    bodies = {
        "409": {"code": "request_in_progress", "detail": "Retry shortly."},
        "422": {"code": "idempotency_key_reused", "detail": "Used with another request."},
        "429": {"code": "throttled", "detail": "Slow down."},
        "503": {"code": "service_unavailable", "detail": "Retry."},
    }
    refused = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            names = {p["name"] for p in operation.get("parameters", [])}
            if "Idempotency-Key" not in names:
                continue
            for status, body in bodies.items():
                response = operation["responses"].get(status)
                if response is None:
                    refused.append(f"{method.upper()} {path} {status}: not documented")
                    continue
                target = _resolve(schema, response["content"]["application/json"]["schema"])
                errors = list(jsonschema.Draft7Validator(target).iter_errors(body))
                if errors:
                    refused.append(f"{method.upper()} {path} {status}: {errors[0].message}")
    assert refused == []
