from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_administrator_signs_in_and_sees_the_admin_index(admin_login, live_server) -> None:
    page = admin_login()
    assert page.url == f"{live_server.url}/admin/"
    assert page.locator("#content h1").inner_text() != ""
    assert page.locator("a[href='/admin/logout/'], form#logout-form").count() >= 1


def test_a_wrong_password_keeps_the_user_on_the_login_page(page, live_server, django_user_model):
    django_user_model.objects.create_superuser(username="root", password="Str0ng-pass!", email="")
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "wrong")
    page.click("input[type=submit]")
    assert "/admin/login/" in page.url
    assert page.locator(".errornote").is_visible()
