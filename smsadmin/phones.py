"""The one place phone numbers are normalized: every model, form, importer and search uses it."""

from __future__ import annotations

import phonenumbers
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

# Dialling prefixes people type in front of an international number, by region. A US
# user writes "011 44 20 7946 0958"; phonenumbers understands the region's own IDD
# prefix, but "00" is common everywhere in pasted data.
_INTERNATIONAL_PREFIXES = ("00",)


class InvalidPhoneNumber(ValueError):
    """A number that cannot be texted, with a reason a person can act on."""


def normalize_phone(raw: object, *, region: str | None = None) -> str:
    """Return ``raw`` in E.164 (``+12015550123``) or raise InvalidPhoneNumber.

    Accepts the forms people write: ``(201) 555-0123``, ``201.555.0123``,
    ``1 (201) 555-0123``, ``+44 20 7946 0958``, ``011 44 20 7946 0958``. Numbers without a
    country code are read in ``region`` (default: the SMS_DEFAULT_REGION setting).
    """
    if raw is None:
        raise InvalidPhoneNumber("No phone number given.")
    text = str(raw).strip()
    if not text:
        raise InvalidPhoneNumber("No phone number given.")
    region = (region or settings.SMS_DEFAULT_REGION).upper()
    if text in _known_valid:
        return text
    e164 = _normalize(text, region)
    if len(_known_valid) >= _KNOWN_VALID_MAX:
        _known_valid.clear()
    _known_valid.add(e164)
    return e164


# Every number that came out of normalize_phone valid. PhoneNumberField.get_prep_value
# sends each stored number back through it on every query and save, so an import or a
# blast would otherwise parse each phone four or five times. A valid E.164 number
# normalizes to itself in any region, so the answer is the same as parsing it again.
_known_valid: set[str] = set()
_KNOWN_VALID_MAX = 65536


def _normalize(text: str, region: str) -> str:
    if not any(ch.isdigit() for ch in text):
        raise InvalidPhoneNumber(f"'{text}' has no digits.")
    candidate = text
    compact = "".join(ch for ch in text if ch.isdigit() or ch == "+")
    if compact.startswith(_INTERNATIONAL_PREFIXES) and not compact.startswith("+"):
        candidate = "+" + compact[2:]
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(_parse_error_reason(text, exc)) from None
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason == phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        raise InvalidPhoneNumber(f"'{text}' is missing its area code.")
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        if reason == phonenumbers.ValidationResult.TOO_SHORT:
            raise InvalidPhoneNumber(f"'{text}' is too short to be a phone number.")
        if reason == phonenumbers.ValidationResult.TOO_LONG:
            raise InvalidPhoneNumber(f"'{text}' is too long to be a phone number.")
        raise InvalidPhoneNumber(f"'{text}' is not a possible phone number.")
    if not phonenumbers.is_valid_number(number):
        where = phonenumbers.region_code_for_number(number) or region
        raise InvalidPhoneNumber(f"'{text}' is not a valid number for {where}.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def try_normalize_phone(raw: object, *, region: str | None = None) -> str | None:
    """E.164 for ``raw``, or None when it is not a valid number (for search boxes)."""
    try:
        return normalize_phone(raw, region=region)
    except InvalidPhoneNumber:
        return None


def format_phone(e164: str) -> str:
    """A stored number as people read it: national form at home, international abroad."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    home = settings.SMS_DEFAULT_REGION.upper()
    if phonenumbers.region_code_for_number(number) == home:
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def _parse_error_reason(text: str, exc: phonenumbers.NumberParseException) -> str:
    reasons = {
        phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: (
            f"'{text}' has no valid country code; write it as +<country code> <number>."
        ),
        phonenumbers.NumberParseException.NOT_A_NUMBER: f"'{text}' is not a phone number.",
        phonenumbers.NumberParseException.TOO_SHORT_NSN: (
            f"'{text}' is too short to be a phone number."
        ),
        phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: (
            f"'{text}' is too short to be a phone number."
        ),
        phonenumbers.NumberParseException.TOO_LONG: (f"'{text}' is too long to be a phone number."),
    }
    return reasons.get(exc.error_type, f"'{text}' is not a phone number.")


class PhoneFormField(forms.CharField):
    def to_python(self, value: object) -> str:
        value = super().to_python(value)
        if value in self.empty_values:
            return ""
        try:
            return normalize_phone(value)
        except InvalidPhoneNumber as exc:
            raise ValidationError(str(exc), code="invalid_phone") from None


class PhoneNumberField(models.CharField):
    """A CharField holding E.164; whatever is assigned through a form is normalized."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("max_length", 16)
        kwargs.setdefault("help_text", "Any common form; stored as +<country><number>.")
        super().__init__(*args, **kwargs)

    def deconstruct(self):  # type: ignore[no-untyped-def]
        name, path, args, kwargs = super().deconstruct()
        if kwargs.get("max_length") == 16:
            del kwargs["max_length"]
        return name, path, args, kwargs

    def to_python(self, value: object) -> str:
        value = super().to_python(value)
        if value in (None, ""):
            return value  # type: ignore[return-value]
        try:
            return normalize_phone(value)
        except InvalidPhoneNumber as exc:
            raise ValidationError(str(exc), code="invalid_phone") from None

    def formfield(self, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("form_class", PhoneFormField)
        return super().formfield(**kwargs)
