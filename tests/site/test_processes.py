"""The real parts: a Celery worker and beat on the configured broker, /healthz, /metrics."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tests.celery_app import touch


def _wait_for(path: Path, seconds: float = 30) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text()
        time.sleep(0.2)
    raise AssertionError(f"{path} did not appear within {seconds} s")


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_a_task_sent_through_the_broker(celery_processes, tmp_path) -> None:
    celery_processes("worker")
    target = tmp_path / "out.txt"
    touch.delay(str(target), "from the worker")
    assert _wait_for(target) == "from the worker"


@pytest.mark.django_db(transaction=True)
def test_beat_schedules_a_periodic_task_from_the_database(celery_processes, tmp_path) -> None:
    target = tmp_path / "beat.txt"
    every_second, _ = IntervalSchedule.objects.get_or_create(
        every=1, period=IntervalSchedule.SECONDS
    )
    PeriodicTask.objects.create(
        name="test touch", task="tests.touch", interval=every_second, args=json.dumps([str(target)])
    )
    celery_processes("worker")
    celery_processes("beat", "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler")
    assert _wait_for(target, 45) == "done"


@pytest.mark.django_db
def test_healthz_reports_database_and_broker(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


@pytest.mark.django_db
def test_healthz_answers_503_when_the_broker_is_down(client, monkeypatch) -> None:
    from kombu import Connection

    from loyalty_site.celery import app

    # Nothing listens on port 1: the broker is as good as down.
    monkeypatch.setattr(app, "connection_for_write", lambda: Connection("redis://127.0.0.1:1/0"))
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"].startswith("error")
    assert response.json()["checks"]["database"] == "ok"


@pytest.mark.django_db
def test_metrics_are_served_in_prometheus_format(client) -> None:
    from loyalty_site import metrics

    metrics.purchase_recorded("completed")
    body = client.get("/metrics").content.decode()
    assert 'loyalty_purchases_total{status="completed"}' in body
    assert "django_http_requests_latency_seconds_by_view_method" in body


@pytest.mark.django_db
def test_metrics_need_the_token_when_one_is_set(client, settings) -> None:
    settings.METRICS_TOKEN = "s3cret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200


def test_json_log_lines_carry_level_logger_and_message(capsys) -> None:
    from logging.config import dictConfig

    from django.conf import settings

    config = {**settings.LOGGING, "root": {"handlers": ["console"], "level": "INFO"}}
    config["handlers"] = {"console": {"class": "logging.StreamHandler", "formatter": "json"}}
    dictConfig(config)
    try:
        logging.getLogger("loyalty.test").warning("points moved")
        line = capsys.readouterr().err.strip().splitlines()[-1]
        record = json.loads(line)
        assert record["level"] == "WARNING"
        assert record["logger"] == "loyalty.test"
        assert record["message"] == "points moved"
    finally:
        dictConfig(settings.LOGGING)
