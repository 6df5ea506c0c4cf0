"""Django admin phrases that read wrong in Russian, taken over by the project's catalog.

Django's Russian admin puts a model's name into fixed sentences ("Изменить %s",
"{name} «{obj}» был успешно добавлен"), which cannot agree with it: "Изменить
покупка", "карта ... был добавлен". The project's catalog (LOCALE_PATHS) comes
before Django's, so it translates these texts anew, with the name after a colon
where no case or gender is needed. They are marked here so that makemessages
keeps them in locale/ru (the texts are Django's own msgids, character for
character).
"""

from __future__ import annotations

from django.utils.translation import gettext_noop

ADMIN_PHRASES = [
    gettext_noop("Add %s"),
    gettext_noop("Change %s"),
    gettext_noop("View %s"),
    gettext_noop("Select %s"),
    gettext_noop("Select %s to change"),
    gettext_noop("Select %s to view"),
    gettext_noop("Add another %(verbose_name)s"),
    gettext_noop("The {name} “{obj}” was added successfully."),
    gettext_noop("The {name} “{obj}” was added successfully. You may add another {name} below."),
    gettext_noop("The {name} “{obj}” was changed successfully."),
    gettext_noop("The {name} “{obj}” was changed successfully. You may edit it again below."),
    gettext_noop("The {name} “{obj}” was changed successfully. You may add another {name} below."),
    gettext_noop("The %(name)s “%(obj)s” was deleted successfully."),
]
