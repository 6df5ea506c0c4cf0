from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db

PASSWORD = "a-Proper-passw0rd"


@pytest.fixture
def admin_user():  # type: ignore[no-untyped-def]
    return get_user_model().objects.create_superuser("chief", "chief@example.com", PASSWORD)


def _login(client: Client, password: str):  # type: ignore[no-untyped-def]
    return client.post(
        reverse("admin:login"),
        {"username": "chief", "password": password, "next": reverse("admin:index")},
    )


def test_the_admin_login_locks_out_after_the_failure_limit(admin_user) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = _login(client, "wrong")
        assert response.status_code in (200, 429)

    response = _login(client, PASSWORD)  # even the right password is refused now

    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    assert client.get(reverse("admin:index")).status_code == 302  # still sent to the login page


def test_fewer_failures_than_the_limit_still_let_the_right_password_in(admin_user) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(client, "wrong").status_code == 200

    response = _login(client, PASSWORD)

    assert response.status_code == 302
    assert client.get(reverse("admin:index")).status_code == 200


def test_a_locked_out_user_does_not_lock_out_another(admin_user) -> None:  # type: ignore[no-untyped-def]
    get_user_model().objects.create_superuser("deputy", "deputy@example.com", PASSWORD)
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "wrong")

    response = client.post(
        reverse("admin:login"),
        {"username": "deputy", "password": PASSWORD, "next": reverse("admin:index")},
    )

    assert response.status_code == 302
