"""Celery tasks of the member pages: thin wrappers around services."""

from __future__ import annotations

from celery import shared_task

from portal import services


@shared_task(name="portal.sign_in_code_send", ignore_result=True)
def sign_in_code_send_task(code_id: int, code: str, language: str) -> bool:
    """Send a sign-in code by SMS (nothing for a phone that is nobody's). Safe to run twice:
    a member may get the same code twice, never a different one."""
    return services.code_deliver(code_id=code_id, code=code, language=language)
