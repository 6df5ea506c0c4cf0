"""The yardstick for the admin path: the member import as django-import-export does it by default.

A plain ModelResource keyed by phone: for every row it loads the member,
keeps a copy for the diff, validates, saves, and then writes the card and
the consent entries of that member. The row check is the shared one
(accounts.csv_format.RowParser), so the only difference from the tuned
MemberResource is how django-import-export is used. Only bench/members.py
uses it.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from import_export import fields, resources

from accounts.cards import issue_card_number
from accounts.csv_format import ColumnMap, RowParser
from accounts.models import Card, Channel, Consent, Member
from programs.models import Program, Store


class UntunedMemberResource(resources.ModelResource):
    phone = fields.Field(attribute="phone", column_name="phone")
    first_name = fields.Field(attribute="first_name", column_name="first_name")
    last_name = fields.Field(attribute="last_name", column_name="last_name")
    email = fields.Field(attribute="email", column_name="email")

    class Meta:
        model = Member
        import_id_fields = ("phone",)
        fields = ("phone", "first_name", "last_name", "email")

    def __init__(self, program: Program, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.program = program
        self.parser: RowParser | None = None
        self.parsed: Any = None
        self.stores = {s.code: s for s in Store.objects.filter(program=program)}

    def before_import(self, dataset: Any, **kwargs: Any) -> None:
        columns = ColumnMap.from_header(dataset.headers)
        self.parser = RowParser(columns, region=self.program.default_region)
        self.headers = dataset.headers

    def before_import_row(self, row: Any, **kwargs: Any) -> None:
        assert self.parser is not None
        self.parsed = self.parser.parse(list(row.values()), kwargs.get("row_number", 0) + 1)
        if self.parsed.errors:
            raise ValidationError(" ".join(self.parsed.errors))
        # The resource's fields read the checked values.
        row.clear()
        row.update(
            phone=self.parsed.phone,
            first_name=self.parsed.first_name or "",
            last_name=self.parsed.last_name or "",
            email=self.parsed.email or "",
        )

    def get_queryset(self) -> Any:
        return Member.objects.filter(program=self.program)

    def init_instance(self, row: Any = None) -> Member:
        tier = self.program.tiers.order_by("threshold").first()
        return Member(program=self.program, channel=Channel.IMPORT, tier=tier)

    def before_save_instance(self, instance: Member, row: Any, **kwargs: Any) -> None:
        parsed = self.parsed
        if parsed.birth_date:
            instance.birth_date = parsed.birth_date
        if parsed.registered_at and instance._state.adding:
            instance.registered_at = parsed.registered_at
        if parsed.store:
            instance.store = self.stores.get(parsed.store)

    def after_save_instance(self, instance: Member, row: Any, **kwargs: Any) -> None:
        parsed = self.parsed
        if not Card.objects.filter(member=instance).exists():
            Card.objects.create(member=instance, number=parsed.card_number or issue_card_number())
        for kind, granted in parsed.consents.items():
            if granted is None:
                continue
            latest = (
                Consent.objects.filter(member=instance, kind=kind)
                .order_by("-created_at", "-id")
                .values_list("granted", flat=True)
                .first()
            )
            if latest != granted:
                Consent.objects.create(
                    member=instance, kind=kind, granted=granted, channel=Channel.IMPORT
                )
