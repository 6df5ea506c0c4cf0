"""Support's side of the member pages: data deletion requests, and members' sign-ins (read only)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from portal import services
from portal.models import DeletionRequest, MemberSession


@admin.register(DeletionRequest)
class DeletionRequestAdmin(admin.ModelAdmin):
    list_display = ("created_at", "member", "status", "handled_at", "handled_by")
    list_filter = ("status",)
    list_select_related = ("member", "handled_by")
    search_fields = ("member__phone", "member__last_name")
    date_hierarchy = "created_at"
    readonly_fields = (
        "member",
        "status",
        "comment",
        "channel",
        "created_at",
        "handled_at",
        "handled_by",
    )
    fields = (*readonly_fields, "resolution")
    actions = ["perform", "reject"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # members ask on their pages; support does not invent requests

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the request and its outcome are the record that the law was followed

    def has_perform_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("portal.perform_deletionrequest") and request.user.has_perm(
            "accounts.anonymise_member"
        )

    @admin.action(
        description=_("Delete the members' data (anonymise; irreversible)"),
        permissions=["perform"],
    )
    def perform(self, request: HttpRequest, queryset: QuerySet[DeletionRequest]) -> None:
        done = 0
        for item in queryset.filter(status=DeletionRequest.Status.OPEN).select_related("member"):
            services.deletion_request_perform(request=item, by=request.user, note=item.resolution)
            done += 1
        self.message_user(request, _("Data deleted for %(n)d member(s).") % {"n": done})

    @admin.action(
        description=_("Reject (write the reason in the note first)"), permissions=["perform"]
    )
    def reject(self, request: HttpRequest, queryset: QuerySet[DeletionRequest]) -> None:
        for item in queryset.filter(status=DeletionRequest.Status.OPEN):
            try:
                services.deletion_request_reject(
                    request=item, by=request.user, note=item.resolution
                )
            except ValueError as error:
                self.message_user(request, f"{item}: {error}", level=messages.ERROR)


@admin.register(MemberSession)
class MemberSessionAdmin(admin.ModelAdmin):
    """Who is signed in where; support can end a member's sessions (a lost phone)."""

    list_display = ("created_at", "member", "kind", "expires_at", "last_used_at", "revoked_at")
    list_filter = ("kind",)
    list_select_related = ("member",)
    search_fields = ("member__phone", "member__last_name")
    exclude = ("token_hash",)
    readonly_fields = (
        "member",
        "kind",
        "family",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "ip",
        "user_agent",
    )
    actions = ["end"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description=_("End these sign-ins"), permissions=["change"])
    def end(self, request: HttpRequest, queryset: QuerySet[MemberSession]) -> None:
        for family in set(queryset.values_list("family", flat=True)):
            services.family_end(family=family)
        self.message_user(request, _("Ended."))
