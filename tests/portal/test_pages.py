"""Every member page renders with real data, in Russian and in English, and is never cached."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.portal.factories import signed_in_client, world_create

pytestmark = pytest.mark.django_db

PAGES = [
    "/my/",
    "/my/points/",
    "/my/purchases/",
    "/my/offers/",
    "/my/card/",
    "/my/settings/",
    "/my/settings/delete/",
]


@pytest.fixture
def world():  # type: ignore[no-untyped-def]
    return world_create()


def _get(client: Client, path: str, language: str):  # type: ignore[no-untyped-def]
    return client.get(path, HTTP_ACCEPT_LANGUAGE=language)


@pytest.mark.parametrize("path", PAGES)
def test_each_page_renders_in_russian_and_english_and_is_never_cached(world, path) -> None:  # type: ignore[no-untyped-def]
    client = signed_in_client(world.member)
    for language, word in (("en", "Sign out"), ("ru", "Выйти")):
        response = _get(client, path, language)
        assert response.status_code == 200
        html = response.content.decode()
        assert f'lang="{language}"' in html
        assert word in html
        assert "private" in response["Cache-Control"]
        assert "no-store" in response["Cache-Control"]


def test_the_home_page_shows_the_members_balance_in_russian(world) -> None:  # type: ignore[no-untyped-def]
    client = signed_in_client(world.member)
    html = _get(client, "/my/", "ru").content.decode()
    from portal.selectors import balance

    points = balance(world.member)
    assert f'id="available">{points.available}<' in html
    assert "бонусов доступно" in html
    assert "Сгорание" in html or "сгора" in html.lower()


def test_the_sign_in_pages_render_in_both_languages_for_a_stranger(world) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    for language, words in (("en", "Get a code"), ("ru", "Получить код")):
        response = _get(client, f"/my/sign-in/?program={world.program.code}", language)
        assert response.status_code == 200 and words in response.content.decode()
        assert "no-store" in response["Cache-Control"]


def test_the_language_switch_at_the_bottom_changes_the_pages_language(world) -> None:  # type: ignore[no-untyped-def]
    client = signed_in_client(world.member)
    assert "Sign out" in _get(client, "/my/", "en").content.decode()
    response = client.post("/i18n/setlang/", {"language": "ru", "next": "/my/"})
    assert response.status_code == 302 and response["Location"] == "/my/"
    assert "Выйти" in _get(client, "/my/", "en").content.decode()


def test_with_several_programs_the_pages_need_to_be_told_which(world, settings) -> None:  # type: ignore[no-untyped-def]
    from tests.pos.factories import program_create

    program_create()
    assert Client().get("/my/sign-in/").status_code == 404
    settings.PORTAL_PROGRAM = world.program.code
    assert Client().get("/my/sign-in/").status_code == 200
