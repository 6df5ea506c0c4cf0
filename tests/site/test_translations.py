"""Every text our code marks for translation has a Russian one (the admin, the API, messages)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from django.conf import settings
from django.utils import translation

APPS = ["accounts", "analytics", "campaigns", "ledger", "loyalty_site", "portal", "pos", "programs"]
SIMPLE = {"_", "gettext", "gettext_lazy", "gettext_noop"}
WITH_CONTEXT = {"pgettext", "pgettext_lazy"}
PLURAL = {"ngettext", "ngettext_lazy"}
SAME_IN_RUSSIAN = {"SMS"}


def _marked() -> list[tuple[str, int, str, tuple[str, ...]]]:
    """(file, line, function, literal arguments) of every translation call with literals."""
    found = []
    for app in APPS:
        for path in sorted((Path(settings.BASE_DIR) / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = getattr(func, "id", None) or getattr(func, "attr", None)
                literals = tuple(
                    a.value
                    for a in node.args
                    if isinstance(a, ast.Constant) and isinstance(a.value, str)
                )
                if name in SIMPLE | WITH_CONTEXT | PLURAL and literals:
                    found.append(
                        (str(path.relative_to(settings.BASE_DIR)), node.lineno, name, literals)
                    )
    return found


def _has_words(text: str) -> bool:
    return bool(re.search("[A-Za-z]{2,}", re.sub(r"%\(\w+\)[sd]|\{\w+\}", "", text)))


def test_every_marked_text_has_a_russian_translation() -> None:
    marked = _marked()
    assert len(marked) > 500  # the walk found the code
    missing = []
    with translation.override("ru"):
        for path, line, name, args in marked:
            if name in SIMPLE:
                english, russian = args[0], translation.gettext(args[0])
            elif name in WITH_CONTEXT and len(args) >= 2:
                english, russian = args[1], translation.pgettext(args[0], args[1])
            elif name in PLURAL and len(args) >= 2:
                english, russian = args[1], translation.ngettext(args[0], args[1], 5)
            else:
                continue
            if russian == english and _has_words(english) and english not in SAME_IN_RUSSIAN:
                missing.append(f"{path}:{line} {english!r}")
    assert missing == [], "run makemessages -l ru in the app and translate:\n" + "\n".join(missing)


def test_every_translate_tag_in_our_templates_has_a_russian_translation() -> None:
    tag = re.compile(r'{%\s*(?:translate|trans)\s+"([^"]+)"(?:\s+context\s+"([^"]+)")?')
    base = Path(settings.BASE_DIR)
    templates = [base / "templates", *(base / app / "templates" for app in APPS)]
    found, missing = 0, []
    with translation.override("ru"):
        for folder in templates:
            for path in sorted(folder.rglob("*.html")) + sorted(folder.rglob("*.txt")):
                for match in tag.finditer(path.read_text()):
                    found += 1
                    english, context = match.groups()
                    russian = (
                        translation.pgettext(context, english)
                        if context
                        else translation.gettext(english)
                    )
                    if russian == english and _has_words(english):
                        missing.append(f"{path.relative_to(base)} {english!r}")
    assert found > 100  # the walk found the templates
    assert missing == [], "\n".join(missing)


def test_shared_english_words_agree_with_their_russian_nouns() -> None:
    # "active", "name", "purchases"... mean different Russian words by what they describe;
    # without a context each took whichever app's (or Django's) translation came first.
    from accounts.models import Card, Member
    from campaigns.models import Status
    from portal.models import DeletionRequest, MemberSession
    from pos.models import Purchase
    from programs.models import Program

    with translation.override("ru"):
        assert str(Member.Status.ACTIVE.label) == "активен"  # участник
        assert str(Card.Status.ACTIVE.label) == "активна"  # карта
        assert str(Card.Status.BLOCKED.label) == "заблокирована"
        assert str(Status.ACTIVE.label) == "активна"  # акция
        assert str(Program._meta.get_field("name").verbose_name) == "название"  # not "имя"
        assert str(Purchase._meta.verbose_name_plural) == "покупки"  # not "покупок"
        assert str(Purchase.Status.PENDING.label) == "ожидает подтверждения"
        field = MemberSession._meta.get_field("expires_at")
        assert str(field.verbose_name) == "действует до"  # a session does not "сгорают"
        assert str(DeletionRequest.Status.REJECTED.label) == "отклонён"  # запрос


def test_the_admins_own_sentences_do_not_put_a_name_in_the_wrong_case(admin_client) -> None:  # type: ignore[no-untyped-def]
    # Django's Russian admin says "Изменить %s" and "{name} ... был успешно добавлен",
    # which cannot agree with "покупка" or "карта"; the project's catalog words them
    # so that any name fits (loyalty_site/admin_phrases.py).
    admin_client.cookies[settings.LANGUAGE_COOKIE_NAME] = "ru"
    page = admin_client.get("/admin/pos/purchase/").content.decode()
    assert "Выбор для просмотра: покупка" in page or "Выбор для изменения: покупка" in page
    page = admin_client.get("/admin/accounts/member/add/").content.decode()
    assert "Добавление: участник" in page
    with translation.override("ru"):
        assert translation.gettext("The {name} “{obj}” was changed successfully.") == (
            "Сохранено: {name} «{obj}»."
        )
