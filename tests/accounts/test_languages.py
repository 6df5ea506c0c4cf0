from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from .factories import member_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff() -> Client:
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-Long-enough-1")
    client = Client()
    client.force_login(user)
    return client


def test_russian_is_the_default_language() -> None:
    # A fresh interpreter: the settings module reads the environment once, at import.
    env = {k: v for k, v in os.environ.items() if k != "LANGUAGE_CODE"}
    env["DJANGO_SETTINGS_MODULE"] = "loyalty_site.settings"
    result = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(settings.LANGUAGE_CODE)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=settings.BASE_DIR,
    )
    assert result.stdout.strip().splitlines()[-1] == "ru"


def test_the_admin_speaks_russian_with_the_terms_of_the_glossary(staff: Client) -> None:
    staff.cookies[settings.LANGUAGE_COOKIE_NAME] = "ru"
    member = member_create()

    index = staff.get(reverse("admin:index")).content.decode()
    page = staff.get(reverse("admin:accounts_member_change", args=[member.pk])).content.decode()

    assert "Бонусная программа" in index
    assert "Участники" in index
    assert "Перевыпустить карту" in page
    assert "стория согласий" in page  # capitalised as a heading
    assert "обработка персональных данных" in page


def test_the_login_page_has_the_site_header_in_english_too() -> None:
    client = Client()
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    assert "Loyalty back office" in client.get(reverse("admin:login")).content.decode()


def test_the_language_switcher_in_the_header_changes_the_language(staff: Client) -> None:
    page = staff.get(reverse("admin:index")).content.decode()
    assert 'action="/i18n/setlang/"' in page
    assert 'value="ru"' in page and 'value="en"' in page

    response = staff.post(
        "/i18n/setlang/", {"language": "ru", "next": reverse("admin:accounts_member_changelist")}
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:accounts_member_changelist")
    assert "Бонусная программа" in staff.get(reverse("admin:index")).content.decode()
