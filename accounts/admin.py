"""Members in the admin, for support staff: find a member, fix their card, block, anonymise.

Every change goes through accounts.services; this module only turns forms and
buttons into service calls and messages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import conditional_escape, format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts import services
from accounts.csv_admin import MemberCsvAdminMixin
from accounts.models import Card, Channel, Consent, Member
from accounts.phones import InvalidPhone, normalize_phone
from accounts.selectors import consent_given_subquery, consents_current, members_typed
from programs.models import Program

# Later apps (ledger, pos) show a member's balance and purchases on the member
# page without accounts importing them: they register a function here from
# their AppConfig.ready(). Each gets the member and returns safe HTML.
MemberPanel = Callable[[Member], str]
MEMBER_PANELS: list[MemberPanel] = []


def member_panel_register(panel: MemberPanel) -> MemberPanel:
    """Add a section to the "Points and purchases" part of the member page."""
    if panel not in MEMBER_PANELS:
        MEMBER_PANELS.append(panel)
    return panel


def _member_exists_message(member: Member) -> SafeString:
    return format_html(
        '{} <a href="{}">{}</a>',
        _("This phone already belongs to a member:"),
        reverse("admin:accounts_member_change", args=[member.pk]),
        member,
    )


class MarketingConsentFilter(admin.SimpleListFilter):
    title = gettext_lazy("marketing consent")
    parameter_name = "consent"
    _choices = {
        "sms_given": (Consent.Kind.MARKETING_SMS, True),
        "sms_not": (Consent.Kind.MARKETING_SMS, False),
        "email_given": (Consent.Kind.MARKETING_EMAIL, True),
        "email_not": (Consent.Kind.MARKETING_EMAIL, False),
    }

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            ("sms_given", gettext_lazy("SMS: given")),
            ("sms_not", gettext_lazy("SMS: not given")),
            ("email_given", gettext_lazy("e-mail: given")),
            ("email_not", gettext_lazy("e-mail: not given")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Member]) -> QuerySet[Member]:
        if self.value() not in self._choices:
            return queryset
        kind, given = self._choices[self.value()]
        queryset = queryset.annotate(_consent_now=consent_given_subquery(kind))
        if given:
            return queryset.filter(_consent_now=True)
        # Never recorded counts as not given.
        return queryset.filter(Q(_consent_now=False) | Q(_consent_now__isnull=True))


class CardInline(admin.TabularInline):
    model = Card
    fk_name = "member"
    fields = ("number", "status", "issued_at", "blocked_at", "replaced_by")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = gettext_lazy("cards (replace a lost one with the button above)")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Card]:
        return super().get_queryset(request).select_related("replaced_by")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ConsentInline(admin.TabularInline):
    """The consent history, read-only; a new entry can be added (it is appended, never edited)."""

    model = Consent
    fields = ("kind", "granted", "text_version", "channel", "created_at", "created_by")
    readonly_fields = ("channel", "created_at", "created_by")
    extra = 0
    can_delete = False
    verbose_name_plural = gettext_lazy("consent history (newest first)")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Consent]:
        return super().get_queryset(request).select_related("created_by")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return self.readonly_fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None or obj.status == Member.Status.ANONYMISED:
            return False
        return super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MemberAddForm(forms.ModelForm):
    """Enrolment by support staff (a customer calls in): the same service the till uses."""

    card_number = forms.CharField(
        label=gettext_lazy("card number"),
        required=False,
        help_text=gettext_lazy("A pre-printed card handed to the customer. Empty: one is issued."),
    )
    consent_personal_data = forms.BooleanField(
        label=gettext_lazy("consents to personal data processing"), required=True
    )
    consent_marketing_sms = forms.BooleanField(
        label=gettext_lazy("agrees to advertising by SMS"), required=False
    )
    consent_marketing_email = forms.BooleanField(
        label=gettext_lazy("agrees to advertising by e-mail"), required=False
    )
    consent_text_version = forms.CharField(
        label=gettext_lazy("consent text version"), required=False, max_length=50
    )

    class Meta:
        model = Member
        fields = ("program", "phone", "first_name", "last_name", "email", "birth_date", "store")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["phone"].required = True
        self.fields["phone"].help_text = gettext_lazy("Any common form: 8 912 345-67-89, +7 912 …")
        programs = list(Program.objects.all()[:2])
        if len(programs) == 1:
            self.fields["program"].initial = programs[0].pk

    def clean(self) -> dict[str, Any]:
        # The service decides in the end; these checks only let the form say why
        # next to the field, instead of after a failed save.
        data = super().clean()
        program: Program | None = data.get("program")
        store = data.get("store")
        if program and store and store.program_id != program.pk:
            self.add_error("store", _("This store belongs to another program."))
        if program and data.get("phone"):
            try:
                data["phone"] = normalize_phone(data["phone"], program.default_region)
            except InvalidPhone as error:
                self.add_error("phone", str(error))
            else:
                existing = Member.objects.filter(program=program, phone=data["phone"]).first()
                if existing is not None:
                    self.add_error("phone", _member_exists_message(existing))
        if data.get("card_number"):
            try:
                number = services.card_number_checked(data["card_number"], channel=Channel.ADMIN)
            except services.InvalidCardNumber as error:
                self.add_error("card_number", str(error))
            else:
                if Card.objects.filter(number=number).exists():
                    self.add_error("card_number", _("This card already belongs to a member."))
        return data

    def validate_unique(self) -> None:
        """Duplicates are the service's to report (with a link to the member), not the form's."""


class MemberChangeForm(forms.ModelForm):
    class Meta:
        model = Member
        fields = ("phone", "first_name", "last_name", "email", "birth_date", "store")

    def clean_phone(self) -> str | None:
        raw = self.cleaned_data.get("phone")
        if not raw:
            raise ValidationError(_("A member needs a phone number."))
        try:
            phone = normalize_phone(raw, self.instance.program.default_region)
        except InvalidPhone as error:
            raise ValidationError(str(error)) from None
        clash = (
            Member.objects.filter(program_id=self.instance.program_id, phone=phone)
            .exclude(pk=self.instance.pk)
            .first()
        )
        if clash is not None:
            raise ValidationError(_member_exists_message(clash))
        return phone

    def clean_store(self) -> Any:
        store = self.cleaned_data.get("store")
        if store is not None and store.program_id != self.instance.program_id:
            raise ValidationError(_("This store belongs to another program."))
        return store

    def validate_unique(self) -> None:
        """The service reports a taken phone; see MemberAdmin.save_model."""


class ReplaceCardForm(forms.Form):
    number = forms.CharField(
        label=gettext_lazy("new card number"),
        required=False,
        max_length=60,
        help_text=gettext_lazy(
            "Type or scan the number of the pre-printed card you hand out. "
            "Leave empty to issue a new number."
        ),
    )


@admin.register(Member)
class MemberAdmin(MemberCsvAdminMixin, admin.ModelAdmin):
    list_display = (
        "member_name",
        "phone",
        "card_number",
        "status",
        "tier",
        "store",
        "registered_at",
    )
    list_display_links = ("member_name", "phone")
    list_select_related = ("tier", "store")
    list_filter = (
        "status",
        MarketingConsentFilter,
        "tier",
        "store",
        ("registered_at", admin.DateFieldListFilter),
        "program",
    )
    search_fields = ("first_name", "last_name", "email")
    search_help_text = gettext_lazy(
        "Phone in any form (8 912 345-67-89, +7…, last digits), card number, name or e-mail."
    )
    show_full_result_count = False  # a COUNT(*) over all members on every search is slow
    list_per_page = 50
    inlines = (CardInline, ConsentInline)
    actions = ("block_selected", "unblock_selected", "anonymise_selected", "replace_card_selected")
    change_form_template = "admin/accounts/member/change_form.html"
    readonly_fields = (
        "id",
        "program",
        "status",
        "tier",
        "registered_at",
        "channel",
        "consents_now",
        "purchase_count",
        "first_purchase_at",
        "last_purchase_at",
        "qualifying_spend",
        "points_and_purchases",
    )

    # --- Pages ------------------------------------------------------------
    def get_fieldsets(self, request: HttpRequest, obj: Member | None = None) -> list[Any]:
        if obj is None:
            return [
                (None, {"fields": ("program", "phone", "card_number", "store")}),
                (
                    _("Person"),
                    {"fields": ("first_name", "last_name", "email", "birth_date")},
                ),
                (
                    _("Consents"),
                    {
                        "fields": (
                            "consent_personal_data",
                            "consent_marketing_sms",
                            "consent_marketing_email",
                            "consent_text_version",
                        )
                    },
                ),
            ]
        return [
            (None, {"fields": ("id", "program", "status", "tier", "consents_now")}),
            (
                _("Person"),
                {"fields": ("phone", "first_name", "last_name", "email", "birth_date")},
            ),
            (_("Registration"), {"fields": ("registered_at", "channel", "store")}),
            (
                _("Points and purchases"),
                {
                    "fields": (
                        "points_and_purchases",
                        "purchase_count",
                        "first_purchase_at",
                        "last_purchase_at",
                        "qualifying_spend",
                    )
                },
            ),
        ]

    def get_form(
        self, request: HttpRequest, obj: Member | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        kwargs["form"] = MemberChangeForm if obj is not None else MemberAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_inlines(self, request: HttpRequest, obj: Member | None) -> Any:
        return self.inlines if obj is not None else ()  # enrolment has its own consent fields

    def get_readonly_fields(self, request: HttpRequest, obj: Member | None = None) -> Any:
        if obj is None:
            return ()
        if obj.status == Member.Status.ANONYMISED:
            return (*self.readonly_fields, *MemberChangeForm.Meta.fields)
        return self.readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Member]:
        active_card = Card.objects.filter(member=OuterRef("pk"), status=Card.Status.ACTIVE)
        return (
            super()
            .get_queryset(request)
            .annotate(_card_number=Subquery(active_card.values("number")[:1]))
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # erasure is anonymisation: the ledger keeps the member id

    def has_block_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.block_member")

    def has_anonymise_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.anonymise_member")

    def has_replace_card_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.replace_card")

    # --- Columns and read-only fields ------------------------------------
    @admin.display(description=gettext_lazy("name"), ordering="last_name")
    def member_name(self, obj: Member) -> str:
        name = f"{obj.last_name} {obj.first_name}".strip()
        if obj.status == Member.Status.ANONYMISED:
            return _("(anonymised)")
        return name or "—"

    @admin.display(description=gettext_lazy("card"))
    def card_number(self, obj: Member) -> str:
        return getattr(obj, "_card_number", None) or "—"

    @admin.display(description=gettext_lazy("consents now"))
    def consents_now(self, obj: Member) -> SafeString:
        state = consents_current(obj)
        labels = dict(Consent.Kind.choices)
        return format_html_join(
            mark_safe("<br>"),
            "{}: {}",
            ((labels[kind], _("yes") if given else _("no")) for kind, given in state.items()),
        )

    @admin.display(description=gettext_lazy("balance and purchases"))
    def points_and_purchases(self, obj: Member) -> SafeString:
        parts = [conditional_escape(panel(obj)) for panel in MEMBER_PANELS]
        if not parts:
            return format_html(
                "<span class='help'>{}</span>",
                _("The points balance and purchases will be shown here."),
            )
        return mark_safe("".join(parts))  # each part is escaped above or already safe

    # --- Search -----------------------------------------------------------
    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Member], search_term: str
    ) -> tuple[QuerySet[Member], bool]:
        """Names and e-mail as usual, plus the phone in any local form and the card number."""
        by_text, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if not search_term.strip():
            return by_text, may_have_duplicates
        return by_text | queryset.filter(members_typed(search_term)), may_have_duplicates

    # --- Saving through the services -------------------------------------
    def save_model(
        self, request: HttpRequest, obj: Member, form: forms.ModelForm, change: bool
    ) -> None:
        data = form.cleaned_data
        try:
            if change:
                changes = {f: data[f] for f in form.changed_data if f in services.UPDATABLE_FIELDS}
                if changes:
                    services.member_update(member=obj, by=request.user, **changes)
                return
            member = services.member_enroll(
                program=data["program"],
                phone=data["phone"],
                first_name=data.get("first_name", ""),
                last_name=data.get("last_name", ""),
                email=data.get("email", ""),
                birth_date=data.get("birth_date"),
                card_number=data.get("card_number") or None,
                store=data.get("store"),
                channel=Channel.ADMIN,
                consents={
                    Consent.Kind.PERSONAL_DATA: data["consent_personal_data"],
                    Consent.Kind.MARKETING_SMS: data["consent_marketing_sms"],
                    Consent.Kind.MARKETING_EMAIL: data["consent_marketing_email"],
                },
                consent_text_version=data.get("consent_text_version", ""),
                by=request.user,
            )
        except services.MemberExists as error:
            raise _FormRejected("phone", _member_exists_message(error.member)) from None
        except (services.CardTaken, services.InvalidCardNumber) as error:
            raise _FormRejected("card_number", str(error)) from None
        obj.pk = member.pk
        obj._state.adding = False

    def save_related(
        self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool
    ) -> None:
        for formset in formsets:
            # Nothing is saved by the formsets themselves (cards change through
            # card_replace only); the change message reads these lists.
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
            if formset.model is Consent and change:
                self._consents_append(request, form.instance, formset)

    def _consents_append(self, request: HttpRequest, member: Member, formset: Any) -> None:
        for entry in formset.extra_forms:
            if not entry.has_changed() or not entry.cleaned_data.get("kind"):
                continue
            formset.new_objects.append(
                services.consent_record(
                    member=member,
                    kind=entry.cleaned_data["kind"],
                    granted=entry.cleaned_data.get("granted", False),
                    channel=Channel.ADMIN,
                    text_version=entry.cleaned_data.get("text_version", ""),
                    by=request.user,
                )
            )

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except _FormRejected as rejected:
            # The service said no after the form validated: show the form again, with why.
            # The whole request ran in one transaction (ModelAdmin wraps it), now rolled back.
            self.message_user(request, rejected.message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ) -> Any:
        obj = kwargs.get("obj") or context.get("original")
        if obj is not None:
            context.update(
                can_block=self.has_block_permission(request),
                can_replace_card=self.has_replace_card_permission(request),
                can_anonymise=self.has_anonymise_permission(request),
                is_anonymised=obj.status == Member.Status.ANONYMISED,
                is_blocked=obj.status == Member.Status.BLOCKED,
            )
        return super().render_change_form(request, context, *args, **kwargs)

    # --- Actions on the list ---------------------------------------------
    @admin.action(description=gettext_lazy("Block selected members"), permissions=["block"])
    def block_selected(self, request: HttpRequest, queryset: QuerySet[Member]) -> None:
        self._status_change(request, queryset, services.member_block, _("Blocked: %(n)d."))

    @admin.action(description=gettext_lazy("Unblock selected members"), permissions=["block"])
    def unblock_selected(self, request: HttpRequest, queryset: QuerySet[Member]) -> None:
        self._status_change(request, queryset, services.member_unblock, _("Unblocked: %(n)d."))

    def _status_change(
        self,
        request: HttpRequest,
        members: Iterable[Member],
        service: Callable[..., bool],
        done: str,
    ) -> None:
        changed = skipped = 0
        for member in members:
            try:
                if service(member=member, by=request.user):
                    changed += 1
                    self.log_change(request, member, [{"changed": {"fields": ["status"]}}])
            except services.MemberAnonymised:
                skipped += 1
        self.message_user(request, done % {"n": changed}, messages.SUCCESS)
        if skipped:
            self.message_user(
                request,
                _("Anonymised members were skipped: %(n)d.") % {"n": skipped},
                messages.WARNING,
            )

    @admin.action(
        description=gettext_lazy("Anonymise selected members (irreversible)…"),
        permissions=["anonymise"],
    )
    def anonymise_selected(
        self, request: HttpRequest, queryset: QuerySet[Member]
    ) -> HttpResponse | None:
        members = list(queryset.exclude(status=Member.Status.ANONYMISED))
        if request.POST.get("confirmed") == "yes":
            for member in members:
                services.member_anonymise(member=member, by=request.user)
                self.log_change(request, member, _("Anonymised"))
            self.message_user(
                request, _("Anonymised: %(n)d.") % {"n": len(members)}, messages.SUCCESS
            )
            return None
        return self._anonymise_confirmation(request, members, action="anonymise_selected")

    @admin.action(
        description=gettext_lazy("Replace the card of the selected member…"),
        permissions=["replace_card"],
    )
    def replace_card_selected(
        self, request: HttpRequest, queryset: QuerySet[Member]
    ) -> HttpResponse | None:
        members = list(queryset[:2])
        if len(members) != 1:
            self.message_user(
                request, _("Select exactly one member to replace a card."), messages.WARNING
            )
            return None
        return HttpResponseRedirect(
            reverse("admin:accounts_member_replace_card", args=[members[0].pk])
        )

    # --- Pages of one member ---------------------------------------------
    def get_urls(self) -> list[Any]:
        own = [
            path(
                "<uuid:object_id>/replace-card/",
                self.admin_site.admin_view(self.replace_card_view),
                name="accounts_member_replace_card",
            ),
            path(
                "<uuid:object_id>/anonymise/",
                self.admin_site.admin_view(self.anonymise_view),
                name="accounts_member_anonymise",
            ),
            path(
                "<uuid:object_id>/block/",
                self.admin_site.admin_view(self.block_view),
                name="accounts_member_block",
            ),
        ]
        return own + super().get_urls()

    def _member_or_404(self, request: HttpRequest, object_id: Any) -> Member:
        member = get_object_or_404(self.get_queryset(request), pk=object_id)
        if not self.has_view_or_change_permission(request, member):
            raise PermissionDenied
        return member

    def _change_url(self, member: Member) -> str:
        return reverse("admin:accounts_member_change", args=[member.pk])

    def replace_card_view(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        member = self._member_or_404(request, object_id)
        if not self.has_replace_card_permission(request):
            raise PermissionDenied
        form = ReplaceCardForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                card = services.card_replace(
                    member=member, number=form.cleaned_data["number"] or None, by=request.user
                )
            except (
                services.CardTaken,
                services.InvalidCardNumber,
                services.MemberAnonymised,
            ) as error:
                form.add_error("number", str(error))
            else:
                self.log_change(request, member, _("Card replaced"))
                self.message_user(
                    request,
                    _("The old card is blocked; the new card is %(number)s.")
                    % {"number": card.number},
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(self._change_url(member))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Replace the card of %(member)s") % {"member": member},
            "member": member,
            "active_card": member.cards.filter(status=Card.Status.ACTIVE).first(),
            "form": form,
        }
        return TemplateResponse(request, "admin/accounts/member/replace_card.html", context)

    def anonymise_view(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        member = self._member_or_404(request, object_id)
        if not self.has_anonymise_permission(request):
            raise PermissionDenied
        if member.status == Member.Status.ANONYMISED:
            self.message_user(request, _("The member is already anonymised."), messages.INFO)
            return HttpResponseRedirect(self._change_url(member))
        if request.method == "POST" and request.POST.get("confirmed") == "yes":
            services.member_anonymise(member=member, by=request.user)
            self.log_change(request, member, _("Anonymised"))
            self.message_user(request, _("The member's personal data is erased."), messages.SUCCESS)
            return HttpResponseRedirect(self._change_url(member))
        return self._anonymise_confirmation(request, [member], action=None)

    def _anonymise_confirmation(
        self, request: HttpRequest, members: list[Member], *, action: str | None
    ) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Anonymise members?"),
            "members": members,
            "action": action,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/accounts/member/anonymise_confirm.html", context)

    def block_view(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        member = self._member_or_404(request, object_id)
        if request.method != "POST" or not self.has_block_permission(request):
            raise PermissionDenied
        unblock = request.POST.get("unblock") == "1"
        self._status_change(
            request,
            [member],
            services.member_unblock if unblock else services.member_block,
            _("Unblocked: %(n)d.") if unblock else _("Blocked: %(n)d."),
        )
        return HttpResponseRedirect(self._change_url(member))


class _FormRejected(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@admin.register(Card)
class CardAdmin(admin.ModelAdmin):
    """Read-only: which member a card belongs to. Cards change through the member page."""

    list_display = ("number", "member", "status", "issued_at", "blocked_at")
    list_select_related = ("member",)
    list_filter = ("status",)
    search_fields = ("=number",)
    show_full_result_count = False
    readonly_fields = ("number", "member", "status", "replaced_by", "issued_at", "blocked_at")
    fields = readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Card]:
        return super().get_queryset(request).select_related("member", "replaced_by")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
