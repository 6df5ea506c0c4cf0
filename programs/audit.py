"""The audit trail: who changed what, when, field by field.

`audit_record` is the one way rows get into `AuditEntry`; programs, campaigns and
manual adjustments all call it inside the transaction of the change itself, so a
change and its audit row are committed together or not at all.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import models

from programs.models import AuditEntry, Program

# Bookkeeping columns whose change is not a change anybody made.
_IGNORED_FIELDS = frozenset({"created_at", "updated_at"})


def to_json(value: Any) -> Any:
    """A JSON-ready copy of a field value: decimals as strings, dates in ISO 8601."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, models.Model):
        return str(value.pk)
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v) for v in value]
    return value


def snapshot(obj: models.Model, *, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The object's editable state as JSON values, keyed by field name.

    Decimals are rendered with the field's decimal places, so "5" typed in a
    file and "5.00" read from the database compare equal. Foreign keys are
    their primary key; the primary key and timestamps are left out.
    """
    skip = _IGNORED_FIELDS | set(exclude)
    state: dict[str, Any] = {}
    for field in obj._meta.concrete_fields:
        if field.primary_key or field.name in skip:
            continue
        value = getattr(obj, field.attname)
        if isinstance(field, models.DecimalField) and value is not None:
            value = Decimal(value).quantize(Decimal(1).scaleb(-field.decimal_places))
        state[field.name] = to_json(value)
    return state


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """{field: [old, new]} for each field whose value differs between two snapshots."""
    return {
        name: [before.get(name), after.get(name)]
        for name in [*before, *(k for k in after if k not in before)]
        if before.get(name) != after.get(name)
    }


def _program_of(obj: models.Model) -> Program | None:
    if isinstance(obj, Program):
        return obj
    program = getattr(obj, "program", None)
    return program if isinstance(program, Program) else None


def audit_record(
    *,
    user: Any,
    action: str,
    obj: models.Model,
    changes: Mapping[str, Any],
    program: Program | None = None,
    source: str = "",
) -> AuditEntry:
    """Write one audit row for `obj`; call it inside the transaction of the change.

    `user` may be None (a command or a scheduled job) or an anonymous user.
    `changes` is {field: [old, new]} (see `diff`); values are made JSON-ready.
    `program` defaults to the object itself or its `program` attribute, so the
    row shows up in that program's history.
    """
    if action not in AuditEntry.Action.values:
        raise ValueError(f"Unknown audit action {action!r}; use one of {AuditEntry.Action.values}.")
    if user is not None and not getattr(user, "is_authenticated", False):
        user = None
    if program is None:
        program = _program_of(obj)
    if program is not None and program.pk is None:
        program = None  # a dry run or a deleted program: nothing to point at
    return AuditEntry.objects.create(
        user=user,
        user_repr=user.get_username() if user is not None else "",
        action=action,
        content_type=ContentType.objects.get_for_model(obj),
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        program=program,
        source=source,
        changes=to_json(dict(changes)),
    )
