"""The APIs' requests skip the middleware only the admin and the portal's pages need.

A till's request carries a terminal key, never a session cookie: sessions,
CSRF, the logged-in user, messages and login lockouts (axes) do nothing for
it, yet cost a tenth of its Python time. The security headers stay.
`ApiShortcut` is the first middleware; it sends `/api/` requests through a
chain built from settings.API_MIDDLEWARE instead of the rest of
settings.MIDDLEWARE.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, ResolverMatch
from django.utils.module_loading import import_string

API_PREFIX = "/api/"


def _api_not_found(request: HttpRequest) -> HttpResponse:
    """An /api/ path that names no endpoint (`purchases//refunds`, a trailing slash):
    the APIs' JSON 404, in the request's language, not Django's HTML page."""
    from pos.errors import NotFound

    return JsonResponse(
        NotFound().body(),
        status=404,
        json_dumps_params={"separators": (",", ":"), "ensure_ascii": False},
    )


class _ApiHandler(BaseHandler):
    """A request handler whose middleware is settings.API_MIDDLEWARE (all synchronous)."""

    def resolve_request(self, request: HttpRequest) -> ResolverMatch:
        try:
            return super().resolve_request(request)
        except Resolver404:
            match = ResolverMatch(_api_not_found, (), {}, url_name="api-not-found")
            request.resolver_match = match
            return match

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler = convert_exception_to_response(self._get_response)
        for path in reversed(settings.API_MIDDLEWARE):
            middleware = import_string(path)(handler)
            if hasattr(middleware, "process_view"):
                self._view_middleware.insert(0, middleware.process_view)
            if hasattr(middleware, "process_template_response"):
                self._template_response_middleware.append(middleware.process_template_response)
            if hasattr(middleware, "process_exception"):
                self._exception_middleware.append(middleware.process_exception)
            handler = convert_exception_to_response(middleware)
        self._middleware_chain = handler


class ApiShortcut:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.api = _ApiHandler()
        self.api.load_middleware()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(API_PREFIX):
            return self.api.get_response(request)
        return self.get_response(request)
