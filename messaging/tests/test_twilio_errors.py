"""The Twilio error table: what the send engine and the status-callback handler rely on.

Plain tests, no database: run with ``-p no:django`` if Django is not wanted.
"""

from __future__ import annotations

import dataclasses

import pytest

from messaging.twilio_errors import (
    ERRORS,
    ErrorClass,
    NumberAction,
    TwilioError,
    classify,
    describe,
    meaning,
    number_action,
)

# --- the engine's core cases ---------------------------------------------------------


def test_20429_retries():
    assert classify(code=20429, http_status=429) is ErrorClass.RETRY


def test_429_without_code_retries():
    assert classify(code=None, http_status=429) is ErrorClass.RETRY


def test_429_with_unlisted_code_retries():
    assert classify(code=99999, http_status=429) is ErrorClass.RETRY


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_without_code_is_unknown(status):
    assert classify(code=None, http_status=status) is ErrorClass.UNKNOWN


@pytest.mark.parametrize("code", [20500, 20503])
def test_twilio_5xx_codes_are_unknown_not_retry(code):
    # Twilio never says these messages were not created: a resend could double-text.
    assert classify(code=code, http_status=code - 20000) is ErrorClass.UNKNOWN


def test_no_status_and_no_code_is_unknown():
    # A timeout or dropped connection: the request may have reached Twilio.
    assert classify(code=None, http_status=None) is ErrorClass.UNKNOWN


def test_unlisted_code_without_status_is_unknown():
    assert classify(code=39999, http_status=None) is ErrorClass.UNKNOWN


def test_unlisted_4xx_fails_without_suppression():
    assert 29999 not in ERRORS
    assert classify(code=29999, http_status=400) is ErrorClass.FAIL
    assert classify(code=None, http_status=400) is ErrorClass.FAIL
    assert classify(code=None, http_status=422) is ErrorClass.FAIL


def test_known_code_wins_over_http_status():
    # A listed code decides, whatever status it came with (callbacks have none).
    assert classify(code=21211, http_status=None) is ErrorClass.RECIPIENT_PERMANENT
    assert classify(code=20003, http_status=401) is ErrorClass.SENDER_OR_ACCOUNT


def test_21610_is_an_opt_out_not_a_suppression():
    entry = ERRORS[21610]
    assert entry.error_class is ErrorClass.RECIPIENT_PERMANENT
    assert entry.number is NumberAction.UNSUBSCRIBE
    assert entry.opt_out is True
    assert entry.suppress is False


def test_20003_pauses_the_blast():
    assert classify(code=20003, http_status=401) is ErrorClass.SENDER_OR_ACCOUNT


@pytest.mark.parametrize(
    "code",
    [20003, 21212, 21603, 21606, 21608, 21611, 30002, 30032, 30034],
)
def test_sender_or_account_codes(code):
    assert classify(code=code, http_status=400) is ErrorClass.SENDER_OR_ACCOUNT


@pytest.mark.parametrize("code", [21408, 21602, 21617])
def test_errors_about_one_recipient_or_its_text_fail_the_row_without_suppressing(code):
    # One member abroad (21408) or one long name (21617) is not the whole blast's fault.
    entry = ERRORS[code]
    assert classify(code=code, http_status=400) is ErrorClass.FAIL
    assert entry.suppress is False
    assert entry.opt_out is False


# --- what a failure does to the number (the categories) -----------------------

BAD_NUMBER = [21211, 21214, 21217, 21614, 21635, 30005, 30006]
OPT_OUT = [21610]
TRANSIENT = [30003, 30004, 30008]
NOT_THE_NUMBER = [20003, 21408, 21606, 21612, 30007, 20429, 30032, 30034]


@pytest.mark.parametrize("code", BAD_NUMBER)
def test_bad_numbers_are_suppressed_at_once(code):
    entry = ERRORS[code]
    assert entry.number is NumberAction.SUPPRESS
    assert number_action(code) is NumberAction.SUPPRESS
    assert entry.suppress is True
    assert entry.opt_out is False
    # The engine fails the row and goes on.
    assert entry.error_class is ErrorClass.RECIPIENT_PERMANENT


@pytest.mark.parametrize("code", TRANSIENT)
def test_possibly_temporary_failures_suppress_only_when_repeated(code):
    assert number_action(code) is NumberAction.TRANSIENT
    assert ERRORS[code].error_class in (ErrorClass.RECIPIENT_PERMANENT, ErrorClass.FAIL)


@pytest.mark.parametrize("code", NOT_THE_NUMBER)
def test_sender_account_and_content_errors_never_touch_the_number(code):
    entry = ERRORS[code]
    assert entry.number is NumberAction.NONE
    assert entry.suppress is False
    assert entry.opt_out is False


def test_engine_classes_kept_for_the_number_categories():
    # The number's category is independent of what the engine does with the row.
    assert classify(code=30008, http_status=None) is ErrorClass.FAIL
    assert classify(code=30007, http_status=None) is ErrorClass.FAIL
    assert classify(code=21612, http_status=400) is ErrorClass.RECIPIENT_PERMANENT
    assert classify(code=20429, http_status=429) is ErrorClass.RETRY


@pytest.mark.parametrize("code", [None, 12345, 39999])
def test_unknown_codes_are_recorded_never_suppressed(code):
    assert number_action(code) is NumberAction.UNKNOWN
    assert meaning(code) == ""


def test_every_category_code_has_twilios_meaning():
    for code in BAD_NUMBER + OPT_OUT + TRANSIENT + NOT_THE_NUMBER:
        assert meaning(code) == ERRORS[code].meaning != ""


def test_delivery_codes_used_by_status_callbacks_are_listed():
    for code in range(30001, 30011):
        assert code in ERRORS, code
    for code in (30019, 30022, 30023, 30024, 30032, 30034):
        assert code in ERRORS, code


# --- describe ------------------------------------------------------------------------


def test_describe_known_code():
    assert describe(21211) == "21211: Invalid 'To' Phone Number"
    assert describe(21610) == "21610: Attempt to send to unsubscribed recipient"


def test_describe_unknown_code():
    assert describe(12345) == "Error 12345"


def test_describe_without_code():
    assert describe(None) == "Error (no code)"


# --- the table itself ------------------------------------------------------------------


def test_table_keys_match_entries():
    for code, entry in ERRORS.items():
        assert isinstance(entry, TwilioError)
        assert entry.code == code
        assert entry.meaning.strip() == entry.meaning != ""
        assert isinstance(entry.error_class, ErrorClass)


def test_only_errors_that_fail_the_row_act_on_the_number():
    for entry in ERRORS.values():
        if entry.error_class not in (ErrorClass.RECIPIENT_PERMANENT, ErrorClass.FAIL):
            assert entry.number is NumberAction.NONE, entry.code
        assert entry.number is not NumberAction.UNKNOWN, entry.code


def test_only_one_opt_out_code():
    assert [e.code for e in ERRORS.values() if e.opt_out] == [21610]


def test_retry_is_only_for_certainly_unprocessed_requests():
    assert [e.code for e in ERRORS.values() if e.error_class is ErrorClass.RETRY] == [20429]


def test_entries_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ERRORS[21211].number = NumberAction.NONE  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"error_class": ErrorClass.SENDER_OR_ACCOUNT, "number": NumberAction.SUPPRESS},
        {"error_class": ErrorClass.SENDER_OR_ACCOUNT, "number": NumberAction.UNSUBSCRIBE},
        {"error_class": ErrorClass.RETRY, "number": NumberAction.TRANSIENT},
        {"error_class": ErrorClass.UNKNOWN, "number": NumberAction.SUPPRESS},
        {"error_class": ErrorClass.FAIL, "number": NumberAction.UNKNOWN},
    ],
)
def test_inconsistent_entries_are_rejected(kwargs):
    with pytest.raises(ValueError):
        TwilioError(1, "x", **kwargs)


def test_error_class_values_are_strings():
    assert ErrorClass.RETRY == "retry"
    assert {c.value for c in ErrorClass} == {
        "retry",
        "unknown",
        "recipient_permanent",
        "sender_or_account",
        "fail",
    }
