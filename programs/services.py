"""Program operations: the program file (import, export) and audited saves.

Every write to a program, tier or store goes through one of these functions,
whether it comes from the admin or from `program_import`, so each one leaves
its audit row (who, when, which fields from what to what) in the same
transaction as the change.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models, router, transaction
from django.db.models.deletion import Collector, ProtectedError, RestrictedError
from django.utils.translation import gettext as _

from programs.audit import audit_record, diff, snapshot
from programs.models import (
    TIER_LADDER_START,
    AuditEntry,
    Program,
    Store,
    Tier,
    tier_ladder_errors,
)

M = TypeVar("M", bound=models.Model)

# Fields an audit row of a tier or store leaves out: the row already names its program.
_CHILD_EXCLUDE = ("program",)


# --- Audited single-object writes (the admin calls these) -----------------------------


def _audit_exclude(obj: models.Model) -> tuple[str, ...]:
    return () if isinstance(obj, Program) else _CHILD_EXCLUDE


def _object_save(obj: M, *, by: Any, source: str) -> dict[str, list[Any]] | None:
    """Save `obj` and audit what changed; returns the changes, or None when nothing did.

    An object that is unchanged is not saved at all, so a repeated import leaves
    no audit rows and no new `updated_at`.
    """
    exclude = _audit_exclude(obj)
    after = snapshot(obj, exclude=exclude)
    if obj.pk is None:
        obj.save()
        changes = {name: [None, value] for name, value in after.items()}
        audit_record(
            user=by, action=AuditEntry.Action.CREATE, obj=obj, changes=changes, source=source
        )
        return changes
    stored = type(obj)._default_manager.select_for_update().get(pk=obj.pk)
    changes = diff(snapshot(stored, exclude=exclude), after)
    if not changes:
        return None
    obj.save()
    audit_record(user=by, action=AuditEntry.Action.UPDATE, obj=obj, changes=changes, source=source)
    return changes


def _object_delete(obj: models.Model, *, by: Any, source: str) -> None:
    """Delete `obj`, auditing its last state (the audit row is written first: it needs the id)."""
    before = snapshot(obj, exclude=_audit_exclude(obj))
    audit_record(
        user=by,
        action=AuditEntry.Action.DELETE,
        obj=obj,
        changes={name: [value, None] for name, value in before.items()},
        source=source,
    )
    obj.delete()


def program_save(*, program: Program, by: Any = None, source: str = "admin") -> Program:
    """Create or update a program as edited (e.g. in the admin), with its audit row."""
    with transaction.atomic():
        _object_save(program, by=by, source=source)
    return program


def tier_save(*, tier: Tier, by: Any = None, source: str = "admin") -> Tier:
    with transaction.atomic():
        _object_save(tier, by=by, source=source)
    return tier


def store_save(*, store: Store, by: Any = None, source: str = "admin") -> Store:
    with transaction.atomic():
        _object_save(store, by=by, source=source)
    return store


def tier_delete(*, tier: Tier, by: Any = None, source: str = "admin") -> None:
    """Remove a tier; raises ProtectedError while members hold it."""
    with transaction.atomic():
        _object_delete(tier, by=by, source=source)


def store_delete(*, store: Store, by: Any = None, source: str = "admin") -> None:
    with transaction.atomic():
        _object_delete(store, by=by, source=source)


def program_delete(*, program: Program, by: Any = None, source: str = "admin") -> None:
    """Remove a program with its tiers and stores, each audited; raises ProtectedError
    while members (or anything else that protects it) refer to it."""
    with transaction.atomic():
        for tier in program.tiers.all():
            _object_delete(tier, by=by, source=source)
        for store in program.stores.all():
            _object_delete(store, by=by, source=source)
        _object_delete(program, by=by, source=source)


# --- The program file -------------------------------------------------------------------


class ProgramFileError(Exception):
    """A program file that cannot be imported; `errors` lists (json_path, message)."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("\n".join(f"{path}: {message}" for path, message in errors))


@dataclass
class ProgramImportResult:
    program: Program
    created: bool
    dry_run: bool
    changes: list[str] = field(default_factory=list)  # one human line per object touched


class _Bad(Exception):
    """A value of the wrong kind; the message says what was expected."""


def _read_text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad(_("must be a string"))
    return value


def _read_decimal(value: Any) -> Decimal:
    # bool is an int in Python, but `true` is no number in a program file.
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise _Bad(_('must be a number, preferably written as a string such as "1.00"'))
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise _Bad(
            _('must be a number such as "1.00", not %(value)s')
            % {"value": json.dumps(value, ensure_ascii=False)}
        ) from None
    if not number.is_finite():
        raise _Bad(_("must be a finite number"))
    return number


def _read_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(_("must be a whole number, 0 or more"))
    if value < 0:
        raise _Bad(_("must be a whole number, 0 or more"))
    return value


def _read_count_or_null(value: Any) -> int | None:
    return None if value is None else _read_count(value)


def _read_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad(_("must be true or false"))
    return value


@dataclass(frozen=True)
class _Key:
    name: str  # the JSON key
    read: Callable[[Any], Any]
    required: bool = False


_PROGRAM_KEYS = [
    _Key("code", _read_text, required=True),
    _Key("name", _read_text, required=True),
    _Key("currency", _read_text),
    _Key("default_region", _read_text),
    _Key("time_zone", _read_text),
    _Key("point_value", _read_decimal, required=True),
    _Key("accrual_percent", _read_decimal, required=True),
    _Key("redeem_max_percent", _read_decimal, required=True),
    _Key("redeem_min_balance", _read_count),
    _Key("accrue_on_redeemed_part", _read_bool),
    _Key("accrual_delay_days", _read_count),
    _Key("points_expire_days", _read_count_or_null),
    _Key("refund_grace_days", _read_count),
    _Key("hold_minutes", _read_count),
    # The two exclusion objects are read by _read_exclusions (one key, two model fields).
    _Key("excluded_from_accrual", dict),
    _Key("excluded_from_redemption", dict),
    _Key("tier_window_days", _read_count_or_null),
]
_EXCLUSION_KEYS = ("excluded_from_accrual", "excluded_from_redemption")
_TIER_KEYS = [
    _Key("code", _read_text, required=True),
    _Key("name", _read_text, required=True),
    _Key("threshold", _read_decimal, required=True),
    _Key("accrual_percent", _read_decimal, required=True),
]
_STORE_KEYS = [
    _Key("code", _read_text, required=True),
    _Key("name", _read_text, required=True),
]
# Model fields whose JSON path differs from their name.
_PROGRAM_FIELD_PATHS = {
    f"{group}_{kind}": f"{group}.{kind}"
    for group in _EXCLUSION_KEYS
    for kind in ("categories", "skus")
}


class _Errors:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append((path, str(message)))

    def has(self, path: str) -> bool:
        return any(
            p == path or p.startswith((f"{path}.", f"{path}[")) for p, _message in self.items
        )

    def add_model_errors(
        self, exc: ValidationError, prefix: str, paths: dict[str, str] | None = None
    ) -> None:
        """Model validation messages under JSON paths, skipping paths already reported."""
        for name, messages in exc.message_dict.items():
            if name == NON_FIELD_ERRORS:
                path = prefix
            else:
                path = f"{prefix}.{(paths or {}).get(name, name)}"
            if name != NON_FIELD_ERRORS and self.has(path):
                continue  # e.g. a missing key already said so; "cannot be blank" adds nothing
            for message in messages:
                self.add(path, message)


def _read_object(item: Any, keys: list[_Key], path: str, errors: _Errors) -> dict[str, Any] | None:
    """Values of a JSON object by key, reporting wrong types, missing and unknown keys."""
    if not isinstance(item, dict):
        errors.add(path, _("must be an object ({...})"))
        return None
    known = {key.name for key in keys}
    for name in item:
        if name not in known:
            errors.add(f"{path}.{name}", _("unknown key"))
    values: dict[str, Any] = {}
    for key in keys:
        if key.name not in item:
            if key.required:
                errors.add(f"{path}.{key.name}", _("required key is missing"))
            continue
        if key.name in _EXCLUSION_KEYS:
            values.update(_read_exclusions(item[key.name], key.name, f"{path}.{key.name}", errors))
            continue
        try:
            values[key.name] = key.read(item[key.name])
        except _Bad as bad:
            errors.add(f"{path}.{key.name}", str(bad))
    return values


def _read_exclusions(value: Any, name: str, path: str, errors: _Errors) -> dict[str, list[str]]:
    """{"categories": [...], "skus": [...]}; a missing list means none is excluded."""
    if not isinstance(value, dict):
        errors.add(path, _('must be an object like {"categories": [], "skus": []}'))
        return {}
    for extra in value.keys() - {"categories", "skus"}:
        errors.add(f"{path}.{extra}", _("unknown key"))
    result: dict[str, list[str]] = {}
    for kind in ("categories", "skus"):
        items = value.get(kind, [])
        if not isinstance(items, list):
            errors.add(f"{path}.{kind}", _("must be a list of strings"))
            continue
        bad = [i for i, code in enumerate(items) if not isinstance(code, str)]
        for i in bad:
            errors.add(f"{path}.{kind}[{i}]", _("must be a string"))
        if not bad:
            result[f"{name}_{kind}"] = list(items)
    return result


def _protected_by(obj: models.Model) -> str | None:
    """What keeps `obj` from being deleted, in words ("12 members"), or None."""
    collector = Collector(using=router.db_for_write(type(obj)))
    try:
        collector.collect([obj])
    except (ProtectedError, RestrictedError) as exc:
        blocking = (
            exc.protected_objects if isinstance(exc, ProtectedError) else exc.restricted_objects
        )
        counts = Counter(type(o)._meta.verbose_name_plural for o in blocking)
        return ", ".join(f"{name}: {n}" for name, n in counts.items())
    return None


def _format_changes(changes: dict[str, list[Any]]) -> str:
    """'key "old" → "new"; ...' naming each field by its key in the program file."""

    def show(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    return "; ".join(
        f"{_PROGRAM_FIELD_PATHS.get(name, name)} {show(old)} → {show(new)}"
        for name, (old, new) in changes.items()
    )


@dataclass
class _Child:
    """A tier or store of the file, matched to its stored row (if any) by code."""

    path: str
    obj: models.Model


def _read_children(
    data: dict[str, Any],
    key: str,
    keys: list[_Key],
    model: type[M],
    stored: dict[str, M],
    errors: _Errors,
) -> list[_Child] | None:
    """The file's tiers or stores as model objects carrying the file's values, validated."""
    if key not in data:
        return None
    items = data[key]
    if not isinstance(items, list):
        errors.add(key, _("must be a list"))
        return None
    children: list[_Child] = []
    first_use: dict[str, int] = {}
    for index, item in enumerate(items):
        path = f"{key}[{index}]"
        values = _read_object(item, keys, path, errors)
        if values is None:
            continue
        code = values.get("code")
        if code is not None:
            if code in first_use:
                errors.add(
                    f"{path}.code",
                    _('"%(code)s" is already used by %(other)s')
                    % {"code": code, "other": f"{key}[{first_use[code]}]"},
                )
                continue
            first_use[code] = index
        obj = stored.get(code) if code is not None else None
        if obj is None:
            obj = model()
        for name, value in values.items():
            setattr(obj, name, value)
        try:
            # Uniqueness within the program follows from unique codes in the file; the
            # database constraints back it at commit.
            obj.full_clean(exclude=["program"], validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            errors.add_model_errors(exc, path)
        children.append(_Child(path=path, obj=obj))
    return children


def _check_tier_ladder(tiers: list[_Child], errors: _Errors) -> None:
    # Only when every threshold is a number: comparing around a bad one says nothing useful.
    if any(errors.has(f"{child.path}.threshold") for child in tiers):
        return
    thresholds = [child.obj.threshold for child in tiers]
    for index, problem in tier_ladder_errors(thresholds):
        path = f"{tiers[index].path}.threshold"
        if problem == TIER_LADDER_START:
            errors.add(
                path, _("the lowest tier must start at 0, so that every member holds a tier")
            )
        else:
            errors.add(
                path,
                _("must be greater than %(other)s")
                % {"other": f"{tiers[index - 1].path}.threshold"},
            )


def program_import(
    data: Any, *, dry_run: bool = False, by: Any = None, source: str = "import"
) -> ProgramImportResult:
    """Create or update a program, its tiers and stores from a program file (API.md).

    All or nothing: every problem is collected and raised together as
    ProgramFileError with its JSON path, before anything is written. Tiers and
    stores are matched by code. A tier missing from the file is removed, unless
    members hold it (an error). A store missing from the file is kept: tills and
    purchases refer to it. A key left out of the file keeps its current value
    (or the default, for a new program). A dry run does all of it and rolls back.
    """
    errors = _Errors()
    if not isinstance(data, dict):
        raise ProgramFileError([("$", _('must be an object with "program", "tiers" and "stores"'))])
    for name in data.keys() - {"program", "tiers", "stores"}:
        errors.add(name, _("unknown key"))
    if "program" not in data:
        errors.add("program", _("required key is missing"))

    with transaction.atomic():
        values = (
            _read_object(data["program"], _PROGRAM_KEYS, "program", errors)
            if "program" in data
            else None
        )
        code = (values or {}).get("code")
        program = (
            Program.objects.select_for_update().filter(code=code).first()
            if isinstance(code, str)
            else None
        )
        created = program is None
        if program is None:
            program = Program()
        if values is not None:
            for name, value in values.items():
                setattr(program, name, value)
            try:
                program.full_clean(validate_unique=False, validate_constraints=False)
            except ValidationError as exc:
                errors.add_model_errors(exc, "program", _PROGRAM_FIELD_PATHS)

        stored_tiers = {} if created else {t.code: t for t in program.tiers.all()}
        stored_stores = {} if created else {s.code: s for s in program.stores.all()}
        tiers = _read_children(data, "tiers", _TIER_KEYS, Tier, stored_tiers, errors)
        stores = _read_children(data, "stores", _STORE_KEYS, Store, stored_stores, errors)

        removed_tiers: list[Tier] = []
        if tiers is not None:
            _check_tier_ladder(tiers, errors)
            in_file = {child.obj.code for child in tiers}
            for tier_code, tier in stored_tiers.items():
                if tier_code in in_file:
                    continue
                blocking = _protected_by(tier)
                if blocking:
                    errors.add(
                        "tiers",
                        _(
                            'tier "%(code)s" is not in the file but is still used by %(what)s; '
                            "keep it in the file, or move them to another tier first"
                        )
                        % {"code": tier_code, "what": blocking},
                    )
                removed_tiers.append(tier)

        if errors.items:
            raise ProgramFileError(errors.items)

        result = ProgramImportResult(program=program, created=created, dry_run=dry_run)
        changes = _object_save(program, by=by, source=source)
        if changes:
            verb = _("created") if created else _format_changes(changes)
            result.changes.append(f'program "{program.code}": {verb}')
        # Removed tiers go first, so a threshold they free can be taken by another tier.
        for tier in removed_tiers:
            result.changes.append(f'tier "{tier.code}": ' + _("removed"))
            _object_delete(tier, by=by, source=source)
        for kind, children in (("tier", tiers), ("store", stores)):
            for child in children or ():
                obj = child.obj
                new = obj.pk is None
                obj.program = program
                changes = _object_save(obj, by=by, source=source)
                if changes:
                    verb = _("created") if new else _format_changes(changes)
                    result.changes.append(f'{kind} "{obj.code}": {verb}')
        if stores is not None:
            in_file = {child.obj.code for child in stores}
            for store_code in sorted(stored_stores.keys() - in_file):
                result.changes.append(f'store "{store_code}": ' + _("not in the file, kept"))

        if dry_run:
            transaction.set_rollback(True)
    return result


def program_import_data(data: dict[str, Any], *, dry_run: bool = False, by: Any = None) -> Program:
    """Import a program file already parsed from JSON; see `program_import`."""
    return program_import(data, dry_run=dry_run, by=by).program


def _plain(value: Decimal) -> str:
    """A decimal without trailing zeros or exponent: 5.00 → "5", 10000.00 → "10000"."""
    return format(value.normalize(), "f")


def program_export_data(code: str) -> dict[str, Any]:
    """The program file of a program (API.md shape); raises Program.DoesNotExist."""
    program = Program.objects.get(code=code)
    return {
        "program": {
            "code": program.code,
            "name": program.name,
            "currency": program.currency,
            "default_region": program.default_region,
            "time_zone": program.time_zone,
            "point_value": f"{program.point_value:.2f}",
            "accrual_percent": _plain(program.accrual_percent),
            "redeem_max_percent": _plain(program.redeem_max_percent),
            "redeem_min_balance": program.redeem_min_balance,
            "accrue_on_redeemed_part": program.accrue_on_redeemed_part,
            "accrual_delay_days": program.accrual_delay_days,
            "points_expire_days": program.points_expire_days,
            "refund_grace_days": program.refund_grace_days,
            "hold_minutes": program.hold_minutes,
            "excluded_from_accrual": {
                "categories": list(program.excluded_from_accrual_categories),
                "skus": list(program.excluded_from_accrual_skus),
            },
            "excluded_from_redemption": {
                "categories": list(program.excluded_from_redemption_categories),
                "skus": list(program.excluded_from_redemption_skus),
            },
            "tier_window_days": program.tier_window_days,
        },
        "tiers": [
            {
                "code": tier.code,
                "name": tier.name,
                "threshold": _plain(tier.threshold),
                "accrual_percent": _plain(tier.accrual_percent),
            }
            for tier in program.tiers.order_by("threshold")
        ],
        "stores": [
            {"code": store.code, "name": store.name} for store in program.stores.order_by("code")
        ],
    }


def program_file_dumps(data: dict[str, Any]) -> str:
    """The text of a program file: indent 2, UTF-8 characters as they are, newline at the end."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def program_file_loads(text: str) -> Any:
    """Parse a program file; numbers with a fraction stay exact (Decimal, never float).

    Raises json.JSONDecodeError (with line and column) for malformed JSON and
    ValueError for a key that appears twice in one object.
    """

    def no_duplicates(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise ValueError(f'the key "{key}" appears twice in one object')
            result[key] = value
        return result

    return json.loads(text, parse_float=Decimal, object_pairs_hook=no_duplicates)
