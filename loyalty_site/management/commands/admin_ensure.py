"""Create the first administrator once, and print the login on every run."""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the admin login (first run) and print it with the admin URL."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--username", default="admin")

    def handle(self, *args: object, username: str, **options: object) -> None:
        saved = settings.VAR_DIR / "admin-password"
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        if user is None:
            password = secrets.token_urlsafe(12)
            user_model.objects.create_superuser(username=username, email="", password=password)
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_text(password)
            saved.chmod(0o600)
        elif saved.exists():
            password = saved.read_text().strip()
        else:
            password = f"(unchanged; set a new one with: manage.py changepassword {username})"
        port = os.environ.get("PORT", "8000")
        self.stdout.write(f"Admin:    http://127.0.0.1:{port}/admin/")
        self.stdout.write(f"Login:    {username}")
        self.stdout.write(f"Password: {password}")
