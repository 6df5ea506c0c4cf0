"""/api/v1/me/ is in the OpenAPI schema, with its own bearer token."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import include, path
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator


def test_the_schema_lists_every_member_endpoint_with_the_bearer_token() -> None:
    # The member API's own part of /api/v1/schema/, generated the same way.
    GENERATOR_STATS.reset()
    patterns = [path("api/v1/me/", include("portal.api.urls"))]
    schema = SchemaGenerator(patterns=patterns).get_schema(request=None, public=True)
    assert not GENERATOR_STATS, "drf-spectacular warned about the member API"
    paths = schema["paths"]
    for route in (
        "/api/v1/me/",
        "/api/v1/me/sign-in/code",
        "/api/v1/me/sign-in/token",
        "/api/v1/me/token/refresh",
        "/api/v1/me/points",
        "/api/v1/me/tier",
        "/api/v1/me/transactions",
        "/api/v1/me/purchases",
        "/api/v1/me/purchases/{purchase_id}",
        "/api/v1/me/offers",
        "/api/v1/me/card",
        "/api/v1/me/consents",
        "/api/v1/me/deletion-request",
    ):
        assert route in paths, route
    scheme = schema["components"]["securitySchemes"]["memberToken"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    assert paths["/api/v1/me/points"]["get"]["security"] == [{"memberToken": []}]
    # Signing in needs no token.
    assert paths["/api/v1/me/sign-in/code"]["post"].get("security") in (None, [], [{}])


@pytest.mark.django_db
def test_the_served_schema_includes_the_member_api() -> None:
    response = Client().get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/me/points" in paths and "/api/v1/members/lookup" in paths
