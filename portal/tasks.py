"""Celery tasks of the member pages: thin wrappers around services."""

from __future__ import annotations

from celery import Task, shared_task

from portal import services
from portal.sms import SmsNotSent


@shared_task(bind=True, name="portal.sign_in_code_send", ignore_result=True, max_retries=3)
def sign_in_code_send_task(self: Task, code_id: int, code: str, language: str) -> bool:
    """Send a sign-in code by SMS (nothing for a phone that is nobody's).

    Safe to run twice: a member may get the same code twice, never another one.
    A provider hiccup is retried a few times within the code's lifetime; after
    it expires, code_deliver sends nothing.
    """
    try:
        return services.code_deliver(code_id=code_id, code=code, language=language)
    except SmsNotSent as error:
        if not error.retry:
            raise
        raise self.retry(countdown=10 * (self.request.retries + 1)) from error


@shared_task(name="portal.sign_in_records_purge", ignore_result=True)
def sign_in_records_purge_task() -> dict[str, int]:
    """Nightly: forget old sign-in codes, wrong guesses and ended sessions."""
    return services.sign_in_records_purge()
