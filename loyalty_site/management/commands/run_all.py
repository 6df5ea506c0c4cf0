"""Web (gunicorn), a Celery worker and beat in the foreground until Ctrl-C."""

from __future__ import annotations

import os
import shutil
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Run web, Celery worker and beat together (Procfile) until Ctrl-C stops them all."

    def handle(self, *args: object, **options: object) -> None:
        port = os.environ.get("PORT", "8000")
        if not port.isdigit():
            raise CommandError(f"PORT={port!r} is not a port number.")
        honcho = os.path.join(os.path.dirname(sys.executable), "honcho")
        # Gunicorn workers and Celery processes each count metrics into files
        # here; /metrics sums them. Stale files from a previous run are dropped.
        metrics_dir = settings.VAR_DIR / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        bin_dir = os.path.dirname(sys.executable)  # gunicorn and celery of this virtualenv
        env = {
            **os.environ,
            "WEB_PORT": port,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        }
        env.setdefault("WEB_CONCURRENCY", "6")
        self.stdout.write(
            self.style.SUCCESS(f"Serving on http://127.0.0.1:{port}/admin/  (Ctrl-C stops all)")
        )
        procfile = os.path.join(settings.BASE_DIR, "Procfile")
        os.chdir(settings.BASE_DIR)
        os.execve(honcho, [honcho, "--no-prefix", "start", "-f", procfile], env)
