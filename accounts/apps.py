from __future__ import annotations

from typing import Any

from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


def _groups_sync_after_migrate(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    """Give the staff groups their permissions once every app has created its own.

    post_migrate is sent once per app, in INSTALLED_APPS order, and each app's
    permissions are created in its own turn; so the sync waits for the last app.
    """
    last = [config for config in apps.get_app_configs() if config.models_module is not None][-1]
    if sender.label != last.label:
        return
    from loyalty_site.groups import groups_sync

    groups_sync(using=using)


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = _("Members")

    def ready(self) -> None:
        post_migrate.connect(
            _groups_sync_after_migrate, dispatch_uid="accounts.groups_sync_after_migrate"
        )
