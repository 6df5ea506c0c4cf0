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


# What the input validation enforces but the generated schema leaves out; clients
# generated from the schema (and schemathesis) then send only what is accepted.
IDEMPOTENCY_KEY_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "pattern": "^[^\\x00-\\x1f\\x7f]+$",  # printable: no control characters
}
NON_EMPTY_LISTS = {("QuoteInput", "lines"), ("PurchaseInput", "lines"), ("RefundInput", "lines")}


def request_schemas_tighten(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]: request schemas as strict as the API.

    - every object in a request body is closed (StrictSerializer refuses unknown fields);
    - money and quantities in requests are never negative (their fields' min_value);
    - a receipt or refund has at least one line;
    - Idempotency-Key is 1–255 printable characters (pos.idempotency.key_from_header).
    """
    components = result.get("components", {}).get("schemas", {})
    seen: set[str] = set()

    def close(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                close(item)
            return
        if not isinstance(node, dict):
            return
        ref = node.get("$ref")
        if ref:
            name = ref.rsplit("/", 1)[1]
            if name not in seen and name in components:
                seen.add(name)
                close(components[name])
            return
        if node.get("type") == "object" or "properties" in node:
            node["additionalProperties"] = False
        for prop in (node.get("properties") or {}).values():
            if prop.get("format") == "decimal" and prop.get("pattern", "").startswith("^-?"):
                prop["pattern"] = "^" + prop["pattern"][3:]
        for key in ("allOf", "oneOf", "anyOf", "items"):
            close(node.get(key))
        for prop in (node.get("properties") or {}).values():
            close(prop)

    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for content in (operation.get("requestBody") or {}).get("content", {}).values():
                close(content.get("schema"))
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "header" and parameter.get("name") == "Idempotency-Key":
                    parameter["schema"] = dict(IDEMPOTENCY_KEY_SCHEMA)
    for component, field in NON_EMPTY_LISTS:
        prop = components.get(component, {}).get("properties", {}).get(field)
        if prop is not None:
            prop["minItems"] = 1
    return result
