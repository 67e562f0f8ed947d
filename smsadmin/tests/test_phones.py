import pytest
from django.test import override_settings

from smsadmin.phones import InvalidPhoneNumber, normalize_phone, phone_display


@pytest.mark.parametrize(
    "raw",
    [
        "(201) 555-0123",
        "201.555.0123",
        "201-555-0123",
        "201 555 0123",
        "2015550123",
        "1 (201) 555-0123",
        "1-201-555-0123",
        "+1 201 555 0123",
        "  +1 (201) 555-0123  ",
    ],
)
def test_us_forms_become_e164(raw):
    assert normalize_phone(raw) == "+12015550123"


@pytest.mark.parametrize(
    "raw",
    ["+44 20 7946 0958", "011 44 20 7946 0958", "0044 20 7946 0958", "+44-20-7946-0958"],
)
def test_international_forms_become_e164(raw):
    assert normalize_phone(raw) == "+442079460958"


def test_national_number_read_in_the_default_region():
    with override_settings(SMS_DEFAULT_REGION="GB"):
        assert normalize_phone("020 7946 0958") == "+442079460958"


def test_region_argument_wins_over_setting():
    assert normalize_phone("020 7946 0958", region="GB") == "+442079460958"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "No phone number"),
        (None, "No phone number"),
        ("abc", "no digits"),
        ("12345", "too short"),
        ("555-0100", "missing its area code"),
        ("201 555 0123 4567 8901", "too long"),
        ("(200) 555-0123", r"not a valid number for the United States \(\+1\)"),
        ("+44 7700 900123", r"not a valid number for the United Kingdom \(\+44\)"),
        ("+999 123 4567", "country code"),
    ],
)
def test_invalid_numbers_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(InvalidPhoneNumber, match=reason):
        normalize_phone(raw)


def test_phone_display_for_people():
    assert phone_display("+12015550123") == "(201) 555-0123"
    assert phone_display("+442079460958") == "+44 20 7946 0958"


def test_stored_numbers_are_parsed_once_and_answer_the_same(monkeypatch):
    from smsadmin import phones

    phones._known_valid.clear()
    calls = []
    real = phones._normalize
    monkeypatch.setattr(phones, "_normalize", lambda *a: (calls.append(a), real(*a))[1])

    assert normalize_phone("(201) 555-0123") == "+12015550123"
    assert [normalize_phone("+12015550123") for _ in range(3)] == ["+12015550123"] * 3
    with override_settings(SMS_DEFAULT_REGION="GB"):
        assert normalize_phone("+12015550123") == "+12015550123"
    assert len(calls) == 1
    for _ in range(2):  # an invalid number is never remembered: it raises every time
        with pytest.raises(InvalidPhoneNumber, match="not a valid number"):
            normalize_phone("+12005550123")
    assert len(calls) == 3
