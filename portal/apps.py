from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = _("Member pages")

    def ready(self) -> None:
        from accounts.signals import member_anonymised
        from portal import receivers

        member_anonymised.connect(
            receivers.sessions_end_on_anonymise, dispatch_uid="portal.sessions_end_on_anonymise"
        )
        # The OpenAPI description of the member token (drf-spectacular finds it on import).
        from portal.api import schema  # noqa: F401
