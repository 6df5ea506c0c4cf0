"""The OpenAPI schema is served, renders without warnings, and real answers match it."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import yaml
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from ledger.services import points_credit
from tests.pos.factories import card_of, member_create, program_create, receipt, till_create

pytestmark = pytest.mark.django_db


def test_the_schema_and_the_local_swagger_ui_are_served() -> None:
    response = Client().get("/api/v1/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert "/api/v1/purchases/quote" in schema["paths"]
    assert "terminalKey" in schema["components"]["securitySchemes"]
    docs = Client().get("/api/v1/docs/").content.decode()
    assert "swagger-ui" in docs
    assert "cdn" not in docs.lower() and "unpkg" not in docs and "jsdelivr" not in docs


def test_the_schema_generates_without_warnings(capsys) -> None:  # type: ignore[no-untyped-def]
    from drf_spectacular.drainage import GENERATOR_STATS

    GENERATOR_STATS.reset()
    SchemaGenerator().get_schema(request=None, public=True)
    assert not GENERATOR_STATS, capsys.readouterr().err


def _openapi_to_jsonschema(node: Any) -> Any:
    """OpenAPI 3.0's `nullable` as JSON Schema's null type; refs kept."""
    if isinstance(node, list):
        return [_openapi_to_jsonschema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _openapi_to_jsonschema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    if "$ref" in out and len(out) > 1:  # siblings of $ref (e.g. readOnly) are ignored by 3.0
        return {"$ref": out["$ref"]}
    return out


@pytest.fixture(scope="module")
def components() -> dict[str, Any]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return _openapi_to_jsonschema(schema)


def _check(components: dict[str, Any], name: str, body: Any) -> None:
    resource = Resource(contents=components, specification=DRAFT202012)
    registry = Registry().with_resource("urn:api", resource)
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"urn:api#/components/schemas/{name}"}, registry=registry
    )
    errors = list(validator.iter_errors(body))
    assert not errors, [e.message for e in errors[:5]]
    # No field the schema does not know (additionalProperties are not closed in 3.0).
    declared = set(components["components"]["schemas"][name]["properties"])
    assert set(body) <= declared, set(body) - declared


def test_real_answers_match_the_schema(components) -> None:  # type: ignore[no-untyped-def]
    till = till_create(program=program_create())
    member = member_create(program=till.terminal.program)
    points_credit(account_or_member=member, amount=100, kind="bonus", reference="s1", source="base")
    card = {"card": card_of(member)}
    _check(components, "MemberSummaryOut", till.get("members/lookup", card=card["card"]).json())
    _check(components, "TransactionPageOut", till.get(f"members/{member.pk}/transactions").json())
    _check(
        components, "QuoteOut", till.post("purchases/quote", receipt("10.00", member=card)).json()
    )
    bought = till.post("purchases", receipt("100.00", "5.50", member=card, redeem_points=5)).json()
    _check(components, "PurchaseOut", bought)
    refund = till.post(
        f"purchases/{bought['id']}/refunds",
        {"refund_number": "R", "lines": [{"line_no": 1, "quantity": "1"}]},
    ).json()
    _check(components, "RefundOut", refund)
    _check(components, "PurchaseOut", till.get(f"purchases/{bought['id']}").json())
    anonymous = till.post("purchases", receipt("1.00", commit=False)).json()
    _check(components, "PurchaseOut", anonymous)
    error = till.post("purchases", receipt("1.00", member=card, redeem_points=10**6)).json()
    _check(components, "RedeemLimitOut", error)
    _check(components, "ErrorOut", till.post("purchases", {"lines": "x"}).json())
