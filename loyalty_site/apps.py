from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class LoyaltySiteConfig(AppConfig):
    """The project itself: the admin site, and the commands that span all apps."""

    name = "loyalty_site"
    verbose_name = _("Loyalty")
