"""The one table that says what a Twilio error code means for a blast.

Used by the send engine (the error of a Messages create: ``TwilioRestException.code`` and
``.status``) and by the status-callback handler (the ``ErrorCode`` of a failed or
undelivered message, with no HTTP status). Each entry carries Twilio's short meaning of
the code plus what we do about it:

``error_class``
    ``RETRY``: Twilio certainly did not create the message, so sending again cannot
    duplicate it. ``UNKNOWN``: the message may or may not exist; the row is marked
    unknown and reconciled against Twilio's message list later. ``RECIPIENT_PERMANENT``:
    this number will not get this message. ``SENDER_OR_ACCOUNT``: every recipient would
    fail the same way, so the blast pauses until staff fix it. ``FAIL``: this row fails,
    nothing else happens.
``number``
    What a failed or undelivered message with this code does to the *number*
    (:class:`NumberAction`; ``suppression.services.failure_record`` acts on it, at send
    time, from status callbacks and in the backfill): ``SUPPRESS`` a bad number at once;
    ``UNSUBSCRIBE`` an opt-out at the carrier or at Twilio (21610: the unsubscribed list,
    not the suppressed list); ``TRANSIENT`` maybe temporary, suppressed only after
    ``SUPPRESS_AFTER_TRANSIENT`` such failures within 90 days; ``NONE`` our sender,
    account or content, never the number's fault. A code not listed is ``UNKNOWN``:
    recorded, never suppressed. This is independent of ``error_class``, which only
    decides what the send engine does with the row and the blast.
``staff_retry``
    Whether staff's "Retry failed" on a blast sends a row that failed with this code
    once more (``messaging.services.retrying``): yes when the reason may have passed
    (a busy carrier, a rate limit, Twilio's own trouble, or a sender, account or
    region setting that staff may have fixed since); no when the same message to the
    same number would fail the same way (an invalid or unreachable number, an opt-out,
    a text too long or empty, a filtered text). Left out, it follows ``error_class``:
    yes for ``RETRY``, ``UNKNOWN`` and ``SENDER_OR_ACCOUNT``, no for the others. A
    code not listed (or no code) is never retried: nothing says it may pass.

Meanings are the titles in Twilio's error dictionary (twilio.com/docs/api/errors/NNNNN
and its machine-readable twilio-error-codes.json). Twilio rewords titles and adds codes
over time (in July 2024, e.g., sending to a short code or a landline got codes of its own
instead of 21211/21614) and advises against hard logic on codes, so a code not listed
here falls back on the HTTP status in :func:`classify`, with the safe reading of each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class NumberAction(StrEnum):
    """What a failure with a code does to the recipient's number (see module docstring)."""

    SUPPRESS = "suppress"
    UNSUBSCRIBE = "unsubscribe"
    TRANSIENT = "transient"
    NONE = "none"
    UNKNOWN = "unknown"


class ErrorClass(StrEnum):
    RETRY = "retry"
    UNKNOWN = "unknown"
    RECIPIENT_PERMANENT = "recipient_permanent"
    SENDER_OR_ACCOUNT = "sender_or_account"
    FAIL = "fail"


@dataclass(frozen=True)
class TwilioError:
    code: int
    meaning: str
    error_class: ErrorClass
    number: NumberAction = NumberAction.NONE
    staff_retry: bool | None = None

    def __post_init__(self) -> None:
        if self.staff_retry is None:
            # A frozen dataclass: the default is filled in once, here.
            object.__setattr__(
                self,
                "staff_retry",
                self.error_class
                in (ErrorClass.RETRY, ErrorClass.UNKNOWN, ErrorClass.SENDER_OR_ACCOUNT),
            )
        if self.number is NumberAction.UNKNOWN:
            raise ValueError(f"{self.code}: UNKNOWN is for codes not in the table")
        if self.number is not NumberAction.NONE and self.error_class not in (
            ErrorClass.RECIPIENT_PERMANENT,
            ErrorClass.FAIL,
        ):
            # A code that pauses the blast or retries is never about one number.
            raise ValueError(f"{self.code}: only errors that fail the row act on the number")

    @property
    def suppress(self) -> bool:
        """Whether failures with this code ever put the number on the suppressed list."""
        return self.number in (NumberAction.SUPPRESS, NumberAction.TRANSIENT)

    @property
    def opt_out(self) -> bool:
        """Whether a failure with this code means the person opted out (21610)."""
        return self.number is NumberAction.UNSUBSCRIBE


_R = ErrorClass.RETRY
_U = ErrorClass.UNKNOWN
_P = ErrorClass.RECIPIENT_PERMANENT
_S = ErrorClass.SENDER_OR_ACCOUNT
_F = ErrorClass.FAIL
_BAD = NumberAction.SUPPRESS
_OPT = NumberAction.UNSUBSCRIBE
_TMP = NumberAction.TRANSIENT


def _table(entries: Iterable[TwilioError]) -> dict[int, TwilioError]:
    table: dict[int, TwilioError] = {}
    for entry in entries:
        if entry.code in table:
            raise ValueError(f"duplicate Twilio error code {entry.code}")
        table[entry.code] = entry
    return table


ERRORS: dict[int, TwilioError] = _table(
    [
        # --- REST API, account and request level ---------------------------------------
        TwilioError(10001, "Account is not active", _S),
        # Wrong Account SID / Auth Token, deleted key, or a suspended/closed account.
        TwilioError(20003, "Permission Denied", _S),
        TwilioError(20005, "Account not active", _S),
        # Live resources called with test credentials: a configuration error.
        TwilioError(20008, "Test Credentials", _S),
        TwilioError(20403, "403 Forbidden", _S),
        # On a Messages create this means a wrong Account SID or base URL: every send
        # would get it.
        TwilioError(20404, "Not Found", _S),
        # Twilio: "Requests that receive 429 responses aren't processed and are safe to
        # retry after backing off."
        TwilioError(20429, "Too Many Requests", _R),
        # Twilio says POSTs that send an SMS are not idempotent and retrying a 500 can
        # text the person twice: the message may exist.
        TwilioError(20500, "Internal Server Error", _U),
        # Twilio only says "temporarily unavailable, try again with back-off"; it does
        # not say the message was not created, so treat it like any 5xx.
        TwilioError(20503, "Service unavailable", _U),
        # --- Messages create: the recipient ----------------------------------------------
        TwilioError(21211, "Invalid 'To' Phone Number", _P, number=_BAD),
        # Documented for outbound calls; for a message, the number cannot be reached at
        # all (not a phone, disconnected): a bad number.
        TwilioError(21214, "'To' phone number cannot be reached", _P, number=_BAD),
        # Documented for outbound calls: the number is invalid.
        TwilioError(21217, "Phone number does not appear to be valid", _P, number=_BAD),
        TwilioError(21265, "'To' number cannot be a Short Code", _P, number=_BAD),
        # The member's number is our own sender number: it can never receive from us.
        TwilioError(21266, "'To' and 'From' numbers cannot be the same", _P, number=_BAD),
        TwilioError(
            21268,
            "Sending to Premium rate or Information Service numbers is not allowed",
            _P,
            number=_BAD,
        ),
        # The person replied STOP (or another opt-out keyword) to our sender: record the
        # opt-out; suppression would be the wrong list and the wrong reason.
        TwilioError(21610, "Attempt to send to unsubscribed recipient", _P, number=_OPT),
        # "Currently": it depends on our From number and the pair (e.g. a short code or
        # a sender not provisioned for that carrier), so it is never held against the
        # number; the row fails.
        TwilioError(21612, "The 'To' phone number is not currently reachable via SMS", _P),
        TwilioError(21614, "'To' number is not a valid mobile number", _P, number=_BAD),
        TwilioError(21635, "'To' number cannot be a landline", _P, number=_BAD),
        # A row without a number is a data bug in that row, not a bad number to suppress.
        TwilioError(21604, "The destination 'To' phone number is required to send an SMS", _F),
        # --- Messages create: the sender, the account, the message -----------------------
        TwilioError(21212, "Invalid From Number (caller ID)", _S),
        # Geo permissions are per destination country: one member abroad must not stop
        # the blast for everyone at home. The row fails; if a whole list is abroad, the
        # run of identical failures pauses the blast (SMS_PAUSE_AFTER_SAME_ERROR).
        # Staff can turn the destination country on in the console (Geo permissions).
        TwilioError(
            21408,
            "Message blocked: permissions disabled for the destination region",
            _F,
            staff_retry=True,
        ),
        TwilioError(21601, "Phone number is not a valid SMS-capable inbound phone number", _S),
        # Only a row whose placeholders rendered to nothing can be empty (compose refuses
        # an empty text), so it is about this row.
        TwilioError(21602, "Message body is required", _F),
        TwilioError(
            21603, "A 'From' or 'MessagingServiceSid' parameter is required to send a message", _S
        ),
        TwilioError(
            21606,
            "The 'From' phone number provided is not a valid message-capable Twilio phone "
            "number for this destination/account",
            _S,
        ),
        # Trial account (or no approved compliance profile): only verified numbers can be
        # texted, so practically the whole audience fails; never the recipient's fault.
        TwilioError(
            21608, "The 'to' phone number provided is not yet verified for this account.", _S
        ),
        # More than 10 hours of messages queued on the sender: the message was not
        # created, but every further send fails until the queue drains, so pause.
        TwilioError(
            21611, "This 'From' number has exceeded the maximum number of queued messages", _S
        ),
        # Body over 1600 characters after this recipient's placeholders (a long name):
        # about this row. A text too long for everyone fails row after row and the run
        # of identical failures pauses the blast.
        TwilioError(21617, "The concatenated message body exceeds the 1600 character limit", _F),
        TwilioError(21619, "A Message Body, Media URL or Content SID is required", _S),
        TwilioError(
            21659, "'From' is not a Twilio phone number or Short Code country mismatch", _S
        ),
        TwilioError(21661, "'From' number is not SMS-capable", _S),
        TwilioError(21701, "The Messaging Service does not exist", _S),
        TwilioError(
            21703,
            "The Messaging Service does not have a phone number available to send a message",
            _S,
        ),
        TwilioError(21704, "The Messaging Service contains no phone numbers", _S),
        TwilioError(21705, "The Messaging Service is invalid", _S),
        TwilioError(63038, "Account exceeded the daily messages limit", _S),
        # --- Delivery (status callback ErrorCode) ----------------------------------------
        # The Messaging Service form of 21611: the sender's queue overflowed, and the rest
        # of the blast would overflow too.
        TwilioError(30001, "Queue overflow", _S),
        TwilioError(30002, "Account suspended", _S),
        # Usually the phone is off, out of coverage or roaming: often temporary.
        TwilioError(30003, "Unreachable destination handset", _P, number=_TMP, staff_retry=True),
        # Blocked at the destination: a carrier block list, an opt-out at the carrier,
        # a landline or filtering, by Twilio's own list. Not proof of an opt-out, and
        # partly temporary, so only repeated failures suppress.
        TwilioError(30004, "Message blocked", _P, number=_TMP),
        # The carrier does not know the number (disconnected, not in service).
        TwilioError(30005, "Unknown destination handset", _P, number=_BAD),
        # A landline (or, for short codes, a carrier the short code cannot reach).
        TwilioError(30006, "Landline or unreachable carrier", _P, number=_BAD),
        # Spam/content filtering by Twilio or the carrier: about our message, not the
        # person, so the row fails and the number stays. Older API responses word it
        # "Carrier violation".
        TwilioError(30007, "Message filtered", _F),
        # The carrier gave no reason: the row fails, and only repeated failures of the
        # same number say something about it.
        TwilioError(30008, "Unknown error", _F, number=_TMP, staff_retry=True),
        # Inbound (multi-part message reassembly) only; listed so it is not "unknown".
        TwilioError(30009, "Missing inbound segment", _F),
        # Only when a MaxPrice is set; the price is per destination.
        TwilioError(30010, "Message price exceeds max price", _F, staff_retry=True),
        TwilioError(30011, "MMS not supported by the receiving phone number in this region", _F),
        TwilioError(30017, "Carrier network congestion", _F, staff_retry=True),
        # Registration is per destination carrier/country and only staff can do it.
        TwilioError(30018, "Destination carrier requires sender ID pre-registration", _S),
        # Mostly media (MMS) size; only recipients on that carrier are affected.
        TwilioError(30019, "Content size exceeds carrier limit", _F),
        # Our 10DLC throughput/limits: everything sent now would fail the same way.
        TwilioError(30022, "US A2P 10DLC - Rate Limits Exceeded", _S),
        TwilioError(30023, "US A2P 10DLC - Daily Message Cap Reached", _S),
        # Twilio: typically >90% failures towards the carrier (sender not provisioned);
        # a recently ported recipient is the rare exception.
        TwilioError(30024, "Numeric Sender ID Not Provisioned on Carrier", _S),
        # Only T-Mobile recipients fail, but the cap is our brand's and lasts the day.
        TwilioError(30027, "US A2P 10DLC - T-Mobile Daily Message Limit Reached", _S),
        TwilioError(30032, "Toll-Free Number Has Not Been Verified", _S),
        # Title as Twilio's console error log words it (its dictionary page was not
        # available to check).
        TwilioError(30034, "US A2P 10DLC - Message from an Unregistered Number", _S),
        # SMS Pumping Protection blocks the destination for 15-30 minutes: temporary and
        # not the person's doing.
        TwilioError(30450, "Message delivery blocked", _F, staff_retry=True),
        TwilioError(30500, "Twilio Internal Error", _F, staff_retry=True),
    ]
)


def classify(*, code: int | None, http_status: int | None) -> ErrorClass:
    """What to do about an error: the table's class for a known code, else by HTTP status.

    Unknown codes: 429 is RETRY (Twilio never processes a 429); 5xx, no status (a
    timeout, a dropped connection, a status callback) or any other non-4xx status is
    UNKNOWN; any other 4xx is FAIL, the row fails and nothing is suppressed.
    """
    if code is not None:
        known = ERRORS.get(code)
        if known is not None:
            return known.error_class
    if http_status is None:
        return ErrorClass.UNKNOWN
    if http_status == 429:
        return ErrorClass.RETRY
    if 400 <= http_status < 500:
        return ErrorClass.FAIL
    return ErrorClass.UNKNOWN


def describe(code: int | None) -> str:
    """``"21211: Invalid 'To' Phone Number"``; ``"Error 12345"`` for a code not listed."""
    if code is None:
        return "Error (no code)"
    known = ERRORS.get(code)
    if known is None:
        return f"Error {code}"
    return f"{code}: {known.meaning}"


def lookup(code: int | None) -> TwilioError | None:
    """The table's entry for ``code``; None for no code or a code not listed."""
    if code is None:
        return None
    return ERRORS.get(code)


def number_action(code: int | None) -> NumberAction:
    """What a failed or undelivered message with ``code`` does to the number.

    Codes not in the table (and no code at all) are ``UNKNOWN``: recorded, never
    suppressed, since nothing says the number is at fault.
    """
    known = lookup(code)
    return known.number if known is not None else NumberAction.UNKNOWN


def meaning(code: int | None) -> str:
    """Twilio's meaning of ``code``; empty for a code not listed."""
    known = lookup(code)
    return known.meaning if known is not None else ""


def staff_retry(code: int | None) -> bool:
    """Whether a row that failed with ``code`` may pass if sent again (see ``staff_retry``
    in the module docstring); False for no code or a code not listed."""
    known = lookup(code)
    return bool(known is not None and known.staff_retry)
