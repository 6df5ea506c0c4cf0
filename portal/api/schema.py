"""How the OpenAPI schema describes the member token (drf-spectacular extension)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class MemberTokenScheme(OpenApiAuthenticationExtension):
    target_class = "portal.api.auth.MemberTokenAuthentication"
    name = "memberToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "A member's access token from POST /api/v1/me/sign-in/token "
                "(short-lived; renew it with POST /api/v1/me/token/refresh)."
            ),
        }
