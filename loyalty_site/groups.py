"""Staff groups and their permissions, kept in code so every install has the same ones.

A migration of `accounts` creates the groups; after every `migrate` the
permissions below are given to them (`groups_sync`, connected in
accounts.apps). The sync is declarative: a group ends up with exactly the
permissions listed here, so change this file rather than the groups in the
admin. (Give a person extra rights through their own user permissions.)

Entries are "app_label.codename" patterns (shell-style wildcards allowed:
"campaigns.*", "ledger.view_*"). A pattern that matches nothing is skipped
silently: apps that come later add their permissions when they exist.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

GROUP_PERMISSIONS: dict[str, list[str]] = {
    # Program rules, tiers, stores, campaigns and what they bring; no member data.
    "marketing": [
        "programs.*",
        "campaigns.*",
        "analytics.*",
    ],
    # Find and help members: their data, cards and consents; sees points, never moves them.
    "support": [
        "accounts.view_member",
        "accounts.add_member",
        "accounts.change_member",
        "accounts.block_member",
        "accounts.replace_card",
        "accounts.anonymise_member",
        "accounts.view_card",
        "accounts.view_consent",
        "accounts.export_members",  # CSV/XLSX of the member list; importing is for administrators
        "accounts.add_consent",
        "programs.view_program",
        "programs.view_tier",
        "programs.view_store",
        "ledger.view_*",
        "ledger.add_adjustmentrequest",
        "pos.view_*",
        # Members' data deletion requests (the task list) and their sign-ins (a lost phone).
        "portal.view_deletionrequest",
        "portal.change_deletionrequest",
        "portal.perform_deletionrequest",
        "portal.view_membersession",
        "portal.change_membersession",
    ],
    # Reads the points book, exports, approves manual adjustments (maker-checker).
    "finance": [
        "accounts.view_member",
        "accounts.view_card",
        "programs.view_*",
        "ledger.view_*",
        "ledger.approve_*",
        "pos.view_*",
        "analytics.view_*",
        "*.export_*",
    ],
    # Everything the project defines, including staff and groups.
    "administrators": [
        "*",
    ],
}


def patterns_match(patterns: list[str], permission: str) -> bool:
    """Is "app_label.codename" covered by one of `patterns`?"""
    return any(fnmatchcase(permission, pattern) for pattern in patterns)


def groups_sync(*, using: str = "default") -> None:
    """Create the groups if missing and give each exactly the permissions of GROUP_PERMISSIONS."""
    from django.contrib.auth.models import Group, Permission

    permissions = list(
        Permission.objects.using(using)
        .select_related("content_type")
        .only("id", "codename", "content_type__app_label")
    )
    for name, patterns in GROUP_PERMISSIONS.items():
        group, _created = Group.objects.using(using).get_or_create(name=name)
        wanted = [
            p
            for p in permissions
            if patterns_match(patterns, f"{p.content_type.app_label}.{p.codename}")
        ]
        group.permissions.set(wanted)
