"""manage.py backfill_suppressions on a history with every category."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from messaging.models import Blast, Delivery
from suppression.management.commands import backfill_suppressions
from suppression.models import FailureEvent, SuppressedContact, UnsubscribedContact
from suppression.services import blocked_phones, failure_record

pytestmark = pytest.mark.django_db

NOW = timezone.now()
BAD, OPTED_OUT, FLAKY, ALMOST, SENDER, UNKNOWN, UNDELIVERED = (
    f"+120155502{i:02d}" for i in range(7)
)


def history() -> None:
    """Three old blasts with failures of each kind, oldest first."""
    rows = [
        # (days ago, phone, code, status, twilio status)
        (60, BAD, 21211, "failed", ""),
        (50, OPTED_OUT, 21610, "failed", ""),
        (60, FLAKY, 30003, "failed", "undelivered"),
        (40, FLAKY, 30004, "sent", "undelivered"),  # a callback on a sent row
        (20, FLAKY, 30008, "failed", "failed"),
        (40, ALMOST, 30003, "failed", "undelivered"),
        (20, ALMOST, 30003, "failed", "undelivered"),
        (20, SENDER, 30007, "failed", "failed"),
        (40, SENDER, 21612, "failed", ""),
        (20, UNKNOWN, 39999, "failed", "failed"),
        (10, UNDELIVERED, 30005, "delivered", "undelivered"),
        (10, "+12015550299", None, "sent", "sent"),  # not a failure
    ]
    blasts = {}
    for n, (days, phone, code, status, twilio_status) in enumerate(rows):
        blast = blasts.setdefault(
            days, Blast.objects.create(name=f"{days} days ago", body="Hi", status="sent")
        )
        delivery = Delivery.objects.create(
            blast=blast,
            phone=phone,
            status=status,
            twilio_status=twilio_status,
            error_code=code,
            twilio_sid=f"SM{n:032d}",
        )
        Delivery.objects.filter(pk=delivery.pk).update(updated_at=NOW - timedelta(days=days))


def snapshot() -> list:
    return [
        list(model.objects.order_by("pk").values())
        for model in (FailureEvent, SuppressedContact, UnsubscribedContact)
    ]


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("backfill_suppressions", *args, stdout=out)
    return out.getvalue()


def test_backfill_classifies_each_category():
    history()
    out = run()

    assert blocked_phones(phones=[BAD, OPTED_OUT, FLAKY, ALMOST, SENDER, UNKNOWN, UNDELIVERED]) == {
        BAD: "suppressed",
        OPTED_OUT: "unsubscribed",
        FLAKY: "suppressed",
        UNDELIVERED: "suppressed",
    }
    flaky = SuppressedContact.objects.get(phone=FLAKY)
    assert (flaky.error_code, flaky.failure_count) == (30008, 3)
    assert flaky.first_failed_at == NOW - timedelta(days=60)
    assert UnsubscribedContact.objects.get(phone=OPTED_OUT).source == "carrier"
    assert FailureEvent.objects.count() == 11
    assert set(FailureEvent.objects.filter(phone=ALMOST).values_list("action", flat=True)) == {
        "counted"
    }

    assert "Recorded 11 failed or undelivered deliveries" in out
    assert "unsubscribed        1" in out
    assert "suppressed          3" in out
    assert "counted             4" in out
    assert "none                3" in out
    assert "21211: Invalid 'To' Phone Number [suppress]: suppressed 1" in out
    assert "30003: Unreachable destination handset [transient]: counted 3" in out
    assert "Error 39999 [unknown]: none 1" in out


def test_a_second_run_changes_nothing():
    history()
    run()
    before = snapshot()
    out = run()
    assert snapshot() == before
    assert "Nothing to do" in out


def test_dry_run_writes_nothing_and_predicts_the_real_run():
    history()
    dry = run("--dry-run")
    assert snapshot() == [[], [], []]
    assert "Dry run: nothing was written." in dry
    real = run()
    # Same summary, line for line, but for the verb and the timing.
    strip = lambda text: [line for line in text.splitlines() if " in " not in line]  # noqa: E731
    assert strip(dry) == strip(real)


def test_failures_recorded_at_send_time_are_not_counted_twice():
    history()
    flaky = Delivery.objects.filter(phone=FLAKY).order_by("updated_at")
    first = flaky[0]
    failure_record(
        phone=FLAKY,
        code=first.error_code,
        delivery_id=first.pk,
        blast_id=first.blast_id,
        message_sid=first.twilio_sid,
        at=first.updated_at,
    )
    out = run()
    assert "Recorded 10 failed" in out
    assert FailureEvent.objects.filter(phone=FLAKY).count() == 3
    assert SuppressedContact.objects.get(phone=FLAKY).failure_count == 3


def test_since_limits_the_run():
    history()
    out = run("--since", (NOW - timedelta(days=15)).date().isoformat())
    assert "Recorded 1 failed or undelivered delivery" in out
    assert blocked_phones(phones=[BAD, UNDELIVERED]) == {UNDELIVERED: "suppressed"}


@pytest.mark.parametrize("bad", ["yesterday", "2025-13-01", "31/01/2025"])
def test_a_bad_date_is_a_clear_message(bad):
    with pytest.raises(CommandError, match="is not a date; write it as YYYY-MM-DD"):
        run("--since", bad)


def test_nothing_to_do_on_an_empty_history():
    assert "Nothing to do" in run()


def test_long_runs_show_a_progress_bar(monkeypatch):
    history()
    monkeypatch.setattr(backfill_suppressions, "PROGRESS_MIN", 5)
    out = run("--dry-run")
    assert "[##############################] 11/11" in out
