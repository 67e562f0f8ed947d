"""The one place phone numbers are normalized: every model, form, importer and search uses it."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.html import conditional_escape
from phonenumbers import geocoder

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
        # keep_raw_input: country_code_source then says whether a country code was written.
        number = phonenumbers.parse(candidate, region, keep_raw_input=True)
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
        raise InvalidPhoneNumber(_not_valid_reason(text, number, region))
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _not_valid_reason(text: str, number: phonenumbers.PhoneNumber, region: str) -> str:
    """Which country the number was judged in, and why that one.

    A number written with its country code (+44..., 0044..., 011 44...) is judged in that
    country; one written without is read as a number of the default region, which the
    message says, with how to write another country's number.
    """
    if number.country_code_source == phonenumbers.CountryCodeSource.FROM_DEFAULT_COUNTRY:
        home = country_words(region)
        return (
            f"'{text}' is not a valid number for {home}. A number without a country code "
            f"is read as one for {home}; write another country's number with + and its "
            f"country code, e.g. {_abroad_example(region)}."
        )
    code = number.country_code
    where = region if phonenumbers.country_code_for_region(region) == code else None
    where = where or phonenumbers.region_code_for_country_code(code)
    return f"'{text}' is not a valid number for {country_words(where, code)}."


# Country names that read with "the" in a sentence ("a number for the United Kingdom").
_WITH_THE = frozenset(
    [
        "AE",
        "BS",
        "CF",
        "CG",
        "CK",
        "DO",
        "FK",
        "FO",
        "GB",
        "GM",
        "KM",
        "KY",
        "MH",
        "MV",
        "NL",
        "PH",
        "SB",
        "SC",
        "TC",
        "US",
        "VA",
        "VG",
        "VI",
    ]
)


@lru_cache(maxsize=512)
def country_words(region: str, code: int | None = None) -> str:
    """'the United Kingdom (+44)': a region's name and calling code, for messages."""
    code = code or phonenumbers.country_code_for_region(region)
    name = ""
    example = phonenumbers.example_number(region)
    if example is not None:
        name = geocoder.country_name_for_number(example, "en")
    if not name:
        return f"{region} (+{code})" if region and region != "ZZ" else f"+{code}"
    the = "the " if region in _WITH_THE and not name.startswith("The ") else ""
    return f"{the}{name} (+{code})"


def try_normalize_phone(raw: object, *, region: str | None = None) -> str | None:
    """E.164 for ``raw``, or None when it is not a valid number (for search boxes)."""
    try:
        return normalize_phone(raw, region=region)
    except InvalidPhoneNumber:
        return None


def phone_display(e164: str | None) -> str:
    """A stored number as people read it: national form at home, international abroad.

    ``+12015550123`` shows as ``(201) 555-0123`` when SMS_DEFAULT_REGION is US, and
    ``+447911123456`` as ``+44 7911 123456``. Only for showing: storage, search and CSV
    exports keep E.164. Anything that is not a number (a sender name Twilio passed on)
    is shown as it is.
    """
    if not e164:
        return ""
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
    def prepare_value(self, value: object) -> object:
        # A stored number is shown in an edit form as people read it; saving it again
        # gives back the same E.164 (a national form is read in SMS_DEFAULT_REGION, the
        # region phone_display shows nationally). What someone typed is left as typed.
        if isinstance(value, str) and value.startswith("+") and value[1:].isdigit():
            return phone_display(value)
        return value

    def to_python(self, value: object) -> str:
        value = super().to_python(value)
        if value in self.empty_values:
            return ""
        try:
            return normalize_phone(value)
        except InvalidPhoneNumber as exc:
            raise ValidationError(str(exc), code="invalid_phone") from None


PHONE_HELP_TEXT = (
    "Any common form, e.g. (201) 555-0123 or +44 20 7946 0958; stored as +<country><number>."
)
# Earlier defaults, as the migrations wrote them down; see PhoneNumberField.deconstruct.
_FORMER_HELP_TEXTS = ("Any common form; stored as +<country><number>.",)


def _abroad_example(home: str) -> str:
    """A number of another country than ``home``, written with its country code."""
    return "+1 201-555-0123" if home.upper() == "GB" else "+44 20 7946 0958"


def phone_help_text() -> str:
    """PHONE_HELP_TEXT with its examples in the form this deployment reads them.

    The national example is one of SMS_DEFAULT_REGION (a US one means nothing to a
    GB deployment, where it would be read as a GB number and refused).
    """
    home = settings.SMS_DEFAULT_REGION.upper()
    if home == "US":
        return PHONE_HELP_TEXT
    example = phonenumbers.example_number(home)
    abroad = _abroad_example(home)
    if example is None:
        examples = abroad
    else:
        examples = f"{phone_display(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164))} or {abroad}"
    return f"Any common form, e.g. {examples}; stored as +<country><number>."


class PhoneNumberField(models.CharField):
    """A CharField holding E.164; whatever is assigned through a form is normalized.

    Its help text is plain text (escaped when the form field is made: the admin and
    Django's form templates show help text as HTML, which would swallow "<country>").
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("max_length", 16)
        kwargs.setdefault("help_text", PHONE_HELP_TEXT)
        super().__init__(*args, **kwargs)

    def deconstruct(self):  # type: ignore[no-untyped-def]
        name, path, args, kwargs = super().deconstruct()
        if kwargs.get("max_length") == 16:
            del kwargs["max_length"]
        # The default help text is the field's own wording, not part of the schema: a
        # change to it (or the former one the existing migrations recorded) is no migration.
        if kwargs.get("help_text") in (PHONE_HELP_TEXT, *_FORMER_HELP_TEXTS):
            del kwargs["help_text"]
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
        help_text = phone_help_text() if self.help_text == PHONE_HELP_TEXT else self.help_text
        kwargs.setdefault("help_text", conditional_escape(help_text))
        return super().formfield(**kwargs)
