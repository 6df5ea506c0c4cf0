"""Headless Chromium (Debian's `chromium` package) driven by Playwright, against live_server.

No browser is downloaded: Playwright launches /usr/bin/chromium (or CHROMIUM_PATH).
Without it the browser tests are skipped with a reason that `make test` prints.
Screenshots of each journey's last page go to test-artifacts/.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
# Playwright's sync API runs an event loop in the test thread; the ORM calls the
# tests make between browser steps are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip(
            "browser tests skipped: Chromium not found (apt-get install chromium, "
            "or set CHROMIUM_PATH)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests skipped: the playwright package is not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request) -> Iterator[object]:  # type: ignore[no-untyped-def]
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


@pytest.fixture
def admin_login(page, live_server, django_user_model):  # type: ignore[no-untyped-def]
    """Sign in to the admin as a fresh superuser through the login form; return the page."""

    def sign_in(username: str = "root", password: str = "Str0ng-pass!", **extra: object):
        if not django_user_model.objects.filter(username=username).exists():
            django_user_model.objects.create_superuser(
                username=username, password=password, email="", **extra
            )
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("input[type=submit]")
        page.wait_for_load_state()
        return page

    return sign_in


STAFF_PASSWORD = "Str0ng-staff-pass!"


@pytest.fixture(autouse=True)
def _fast_passwords(settings) -> None:  # type: ignore[no-untyped-def]
    """Each sign-in hashes a password; the real hasher's deliberate slowness is not under test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff_login(page, live_server, django_user_model):  # type: ignore[no-untyped-def]
    """Sign in through the login form as a staff user of one staff group; return the user.

    Signing in again (another group) first drops the cookies of the one before,
    as if that person had closed the browser.
    """
    from django.contrib.auth.models import Group

    def sign_in(*groups: str, username: str | None = None) -> object:
        username = username or "-".join(groups)
        user = django_user_model.objects.filter(username=username).first()
        if user is None:
            user = django_user_model.objects.create_user(
                username=username, password=STAFF_PASSWORD, is_staff=True
            )
            user.groups.add(*Group.objects.filter(name__in=groups))
        page.context.clear_cookies()
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", STAFF_PASSWORD)
        page.click("input[type=submit]")
        # Each group has its own first page (marketing and finance open the dashboard).
        page.wait_for_url(lambda url: "/admin/" in url and "/admin/login/" not in url)
        return user

    return sign_in


@pytest.fixture
def console_errors(page) -> list[str]:  # type: ignore[no-untyped-def]
    """Errors the pages log to the browser console or throw, collected as they happen."""
    errors: list[str] = []

    def on_console(message) -> None:  # type: ignore[no-untyped-def]
        url = message.location.get("url", "")
        # Chromium asks every site for /favicon.ico on its own; the admin links none.
        if message.type == "error" and not url.endswith("/favicon.ico"):
            errors.append(f"{message.text} ({url})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors
