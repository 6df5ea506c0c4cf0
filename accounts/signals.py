"""Signals other apps listen to, because accounts must not import them (ARCHITECTURE.md)."""

from __future__ import annotations

from django.dispatch import Signal

# Sent inside member_anonymise's transaction with `member` and `by`: an app that
# keeps personal data of its own (message outbox, referral links) erases it here.
member_anonymised = Signal()
