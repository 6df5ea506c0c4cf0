"""What the member-facing pages keep: one-time sign-in codes, sessions, deletion requests.

Invariants:
- portal_signincode_attempts_range: a code is never tried more often than allowed
  (attempts move with a conditional F() update, so concurrent guesses cannot overshoot);
- codes are stored as an HMAC of (phone, code) only: a database leak gives no usable code;
- a code is used once (`used_at` is set by a conditional update where it is NULL);
- portal_membersession_unique_hash: a token opens one session; only the SHA-256 of a
  token is stored;
- portal_deletionrequest_one_open: a member has at most one open deletion request.
A code row is written for every request, also for phones of nobody (``member`` is
NULL then, and nothing is sent): the answer, the work done and the rate limits are
the same whether the phone belongs to a member or not.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from accounts.models import Member
from programs.models import Program


class SignInCode(models.Model):
    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+")
    phone = models.CharField(_("phone"), max_length=20)
    member = models.ForeignKey(
        Member, verbose_name=_("member"), on_delete=models.CASCADE, null=True, related_name="+"
    )
    code_hash = models.CharField(max_length=64)
    ip = models.GenericIPAddressField(_("IP address"), null=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    expires_at = models.DateTimeField(pgettext_lazy("a code or a session", "expires at"))
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    max_attempts = models.PositiveSmallIntegerField(_("attempts allowed"))
    used_at = models.DateTimeField(_("used at"), null=True)

    class Meta:
        verbose_name = _("sign-in code")
        verbose_name_plural = _("sign-in codes")
        constraints = [
            models.CheckConstraint(
                condition=Q(attempts__lte=F("max_attempts")),
                name="portal_signincode_attempts_range",
            ),
        ]
        indexes = [
            models.Index(fields=["program", "phone", "-created_at"], name="portal_code_phone"),
            models.Index(fields=["ip", "-created_at"], name="portal_code_ip"),
            models.Index(fields=["created_at"], name="portal_code_created"),
        ]

    def __str__(self) -> str:
        return f"{self.phone} @ {self.created_at:%Y-%m-%d %H:%M}"


class SignInFailure(models.Model):
    """A wrong code typed for a phone from an IP: the lockouts count these rows."""

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+")
    phone = models.CharField(_("phone"), max_length=20)
    ip = models.GenericIPAddressField(_("IP address"), null=True)
    created_at = models.DateTimeField(_("time"), default=timezone.now)

    class Meta:
        verbose_name = _("failed sign-in")
        verbose_name_plural = _("failed sign-ins")
        indexes = [
            models.Index(fields=["program", "phone", "-created_at"], name="portal_fail_phone"),
            models.Index(fields=["ip", "-created_at"], name="portal_fail_ip"),
        ]

    def __str__(self) -> str:
        return f"{self.phone} @ {self.created_at:%Y-%m-%d %H:%M}"


class MemberSession(models.Model):
    """A signed-in member: a web session or an app's token pair.

    Web sessions keep their token in the Django session (server side); apps get a
    short-lived access token and a refresh token. A refresh token is used once:
    refreshing revokes it and issues the next one in the same ``family``; a revoked
    refresh token presented again means it was stolen, and ends the whole family.
    """

    class Kind(models.TextChoices):
        WEB = "web", _("web page session")
        ACCESS = "access", _("app access token")
        REFRESH = "refresh", _("app refresh token")

    member = models.ForeignKey(
        Member, verbose_name=_("member"), on_delete=models.CASCADE, related_name="+"
    )
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    token_hash = models.CharField(max_length=64)
    family = models.UUIDField(_("sign-in"), db_index=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    expires_at = models.DateTimeField(pgettext_lazy("a code or a session", "expires at"))
    last_used_at = models.DateTimeField(_("last used at"), null=True)
    revoked_at = models.DateTimeField(_("ended at"), null=True)
    ip = models.GenericIPAddressField(_("IP address"), null=True)
    user_agent = models.CharField(_("browser or app"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("member session")
        verbose_name_plural = _("member sessions")
        constraints = [
            models.UniqueConstraint(fields=["token_hash"], name="portal_membersession_unique_hash"),
        ]
        indexes = [models.Index(fields=["member", "-created_at"], name="portal_session_member")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.created_at:%Y-%m-%d %H:%M}"


class DeletionRequest(models.Model):
    """A member asked to delete their data: a task for support, who anonymise the member."""

    class Status(models.TextChoices):
        OPEN = "open", _("to do")
        DONE = "done", _("data deleted")
        REJECTED = "rejected", pgettext_lazy("status of a request", "rejected")

    member = models.ForeignKey(
        Member, verbose_name=_("member"), on_delete=models.PROTECT, related_name="+"
    )
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.OPEN
    )
    comment = models.TextField(_("member's comment"), blank=True)
    channel = models.CharField(_("channel"), max_length=10, default="web")
    created_at = models.DateTimeField(_("requested at"), default=timezone.now)
    handled_at = models.DateTimeField(_("handled at"), null=True, blank=True)
    handled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("handled by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    resolution = models.TextField(_("support's note"), blank=True)

    class Meta:
        verbose_name = _("data deletion request")
        verbose_name_plural = _("data deletion requests")
        ordering = ["status", "created_at"]
        permissions = [
            ("perform_deletionrequest", _("Can delete a member's data on their request")),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["member"],
                condition=Q(status="open"),
                name="portal_deletionrequest_one_open",
            ),
            models.CheckConstraint(
                condition=Q(status="open") | Q(handled_at__isnull=False),
                name="portal_deletionrequest_handled_when_closed",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_status_display()}: {self.created_at:%Y-%m-%d}"
