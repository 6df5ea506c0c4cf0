"""A trigger job killed between a member's bonus and its message: the rerun must still send it.

Deterministic: a test connection holds a SHARE lock on the outbox table, so
the worker's first INSERT of a message waits; by then the bonus before it is
committed. The worker is SIGKILLed while it waits, the lock is released, and
the job runs again, as beat would run it an hour later.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import psycopg
import pytest
from django.utils import timezone

from bench.common import database_url
from bench.soak_stack import Stack, pg_execute, url_with_database, wait_until
from tests.resilience.factories import trigger_with_message

APP_NAME = "resilience-trigger"


def _welcome_setup() -> int:
    from campaigns.models import TriggerKind
    from loyalty_site.management.commands.demo_load import demo_members, demo_program

    program = demo_program()
    demo_members(program, count=5)
    program.members.update(registered_at=timezone.now() - datetime.timedelta(days=1))
    trigger_with_message(program, TriggerKind.WELCOME, points=50, expire_days=30)
    return program.members.count()


@pytest.mark.django_db(transaction=True)
def test_a_trigger_killed_between_bonus_and_message_still_sends_it(tmp_path: Path) -> None:
    members = _welcome_setup()
    url = database_url()
    database = url.rsplit("/", 1)[1]
    admin = url_with_database(url, "postgres")
    env = {"MESSAGES_QUIET_FROM": "0", "MESSAGES_QUIET_TO": "0", "PGAPPNAME": APP_NAME}
    stack = Stack(database_url=url, workdir=tmp_path, extra_env=env)
    blocker = psycopg.connect(url)
    try:
        blocker.execute("LOCK TABLE campaigns_outboxmessage IN SHARE MODE")
        worker = stack.celery("worker")
        wait_until(lambda: "ready." in stack.log("worker"), seconds=90, what="worker ready")
        stack.send_task("campaigns.triggers_run_task")
        wait_until(
            lambda: pg_execute(
                admin,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                " AND datname = %s AND wait_event_type = 'Lock'",
                [APP_NAME, database],
            )[0][0],
            seconds=90,
            what="the job waiting to queue its first message",
        )
        stack.kill(worker)
        blocker.rollback()
        # The job again, to the end.
        stack.run(
            "from campaigns.tasks import triggers_run_task\n"
            "print(json.dumps(triggers_run_task()))\n"
        )
    finally:
        blocker.close()
        stack.stop()

    bonuses = pg_execute(url, "SELECT reference FROM ledger_transfer WHERE kind = 'bonus'")
    messages = pg_execute(url, "SELECT reference FROM campaigns_outboxmessage")
    assert len(bonuses) == members
    assert sorted(f"{ref}:sms" for (ref,) in bonuses) == sorted(ref for (ref,) in messages)
