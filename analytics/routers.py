"""Send analytics reads to the read replica when DATABASE_REPLICA_URL is set.

Only reads of analytics' own tables (the dashboard and reports) go there; the
jobs that build them write to, and read their sources from, the primary, so
they never act on replica lag. Nothing is migrated on the replica (it follows
the primary by replication).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

REPLICA = "replica"


class AnalyticsReplicaRouter:
    def db_for_read(self, model: type[Any], **hints: Any) -> str | None:
        if model._meta.app_label == "analytics" and REPLICA in settings.DATABASES:
            return REPLICA
        return None

    def db_for_write(self, model: type[Any], **hints: Any) -> str | None:
        return None

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        return False if db == REPLICA else None
