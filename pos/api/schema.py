"""How the OpenAPI schema describes the terminal key (a drf-spectacular extension)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class TerminalKeyScheme(OpenApiAuthenticationExtension):
    target_class = "pos.auth.TerminalAuthentication"
    name = "terminalKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <terminal key>`: the key printed once by "
            "`manage.py terminal_create` or shown once in the admin.",
        }
