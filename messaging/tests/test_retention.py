"""Data retention: old message texts and numbers are erased, statistics and opt-outs stay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from members.models import Member
from messaging.models import Blast, Delivery, InboundMessage, OutboxMessage
from messaging.services import blast_create
from messaging.services.retention import messages_erase_older
from messaging.tasks import erase_old_messages_task
from messaging.tests.conftest import make_members, phone, run_to_end
from messaging.tests.processes import program_env, shell_json
from suppression.models import SuppressedContact, UnsubscribedContact
from suppression.services import unsubscribe

pytestmark = pytest.mark.django_db

S = Delivery.Status
INVALID = "+15005550001"  # the console backend refuses it with 21211, as Twilio does


def sent_blast(name: str) -> Blast:
    blast = blast_create(body="Hi {first_name}, see you Saturday", community=True, name=name)
    return run_to_end(blast)


def age(blast: Blast, *, days: int) -> None:
    then = timezone.now() - timedelta(days=days)
    Delivery.objects.filter(blast=blast).update(created_at=then)
    # What the console backend recorded so far: this blast's messages.
    OutboxMessage.objects.update(created_at=then)


def inbound(sid: str, *, days: int, body: str = "Can I bring my dog?") -> InboundMessage:
    message = InboundMessage.objects.create(
        message_sid=sid, phone=phone(1), body=body, media_urls=["https://example.org/m.jpg"]
    )
    InboundMessage.objects.filter(pk=message.pk).update(
        received_at=timezone.now() - timedelta(days=days)
    )
    return message


@pytest.fixture
def old_and_new():
    make_members(4)
    Member.objects.create(first_name="Broken", phone=INVALID)
    # Opted out before the blast: skipped, and kept on the list forever.
    unsubscribe(phone=phone(3), source=UnsubscribedContact.Source.MANUAL, reason="asked")
    old = sent_blast("Spring")
    age(old, days=100)
    new = sent_blast("Summer")
    return old, new


def test_old_messages_are_erased_and_recent_ones_kept(old_and_new):
    old, new = old_and_new
    old_counts, new_counts = old.counts(), new.counts()
    assert old_counts[S.SENT] == 3 and old_counts[S.FAILED] == 1 and old_counts[S.SKIPPED] == 1
    old_inbound = inbound("SM" + "1" * 32, days=100)
    new_inbound = inbound("SM" + "2" * 32, days=2)

    result = messages_erase_older(days=90)

    assert result == {"deliveries": 5, "inbound_messages": 1, "outbox_messages": 3}
    for row in Delivery.objects.filter(blast=old):
        assert row.phone.startswith("erased-")
        assert not row.phone.startswith("+")
        assert row.body == row.first_name == row.last_name == row.error_message == ""
    # Statuses, codes and SIDs stay: the blast's statistics do not change.
    assert old.counts() == old_counts
    assert Delivery.objects.get(blast=old, status=S.FAILED).error_code == 21211
    assert Delivery.objects.filter(blast=old, twilio_sid__isnull=False).count() == 3
    assert all(
        m.to == "erased" and m.body == ""
        for m in OutboxMessage.objects.filter(created_at__lt=timezone.now() - timedelta(days=90))
    )
    old_inbound.refresh_from_db()
    assert (old_inbound.phone, old_inbound.body, old_inbound.media_urls) == ("erased", "", [])
    assert old_inbound.message_sid == "SM" + "1" * 32

    # The recent blast and reply are untouched.
    assert new.counts() == new_counts
    assert all(row.phone.startswith("+") and row.body for row in Delivery.objects.filter(blast=new))
    new_inbound.refresh_from_db()
    assert new_inbound.phone == phone(1) and new_inbound.body == "Can I bring my dog?"
    assert OutboxMessage.objects.exclude(to="erased").count() == 3


def test_opt_outs_and_suppressions_are_never_erased(old_and_new):
    unsubscribed = list(UnsubscribedContact.objects.values_list("phone", "reason"))
    suppressed = list(SuppressedContact.objects.values_list("phone", "error_code", "lifted"))
    assert unsubscribed == [(phone(3), "asked")]
    assert suppressed == [(INVALID, 21211, False)]

    messages_erase_older(days=90)

    assert list(UnsubscribedContact.objects.values_list("phone", "reason")) == unsubscribed
    assert (
        list(SuppressedContact.objects.values_list("phone", "error_code", "lifted")) == suppressed
    )


def test_rows_still_in_play_keep_their_number():
    make_members(2)
    # Pending for 100 days (a paused blast): it still needs its numbers to send.
    blast = blast_create(body="Hi", community=True, name="Waiting")
    Delivery.objects.filter(blast=blast).update(created_at=timezone.now() - timedelta(days=100))
    Delivery.objects.filter(blast=blast, phone=phone(1)).update(status=S.UNKNOWN)

    assert messages_erase_older(days=90)["deliveries"] == 0
    assert sorted(Delivery.objects.values_list("phone", flat=True)) == [phone(0), phone(1)]


def test_erasing_again_changes_nothing(old_and_new):
    old, _ = old_and_new
    inbound("SM" + "1" * 32, days=100)
    messages_erase_older(days=90)
    before = list(Delivery.objects.order_by("pk").values())

    assert messages_erase_older(days=90) == {
        "deliveries": 0,
        "inbound_messages": 0,
        "outbox_messages": 0,
    }
    assert list(Delivery.objects.order_by("pk").values()) == before


def test_a_dry_run_counts_and_changes_nothing(old_and_new, capsys):
    before = list(Delivery.objects.order_by("pk").values_list("phone", "body"))

    call_command("erase_old_messages", "--days", "90", "--dry-run")

    assert capsys.readouterr().out.strip() == (
        "Would erase messages older than 90 days: 5 deliveries, 0 inbound messages, "
        "3 outbox messages."
    )
    assert list(Delivery.objects.order_by("pk").values_list("phone", "body")) == before

    call_command("erase_old_messages", "--days", "90")
    assert capsys.readouterr().out.startswith("Erased messages older than 90 days: 5 deliveries")
    assert Delivery.objects.filter(phone__startswith="erased-").count() == 5


def test_the_daily_task_follows_retention_days(old_and_new, settings):
    settings.RETENTION_DAYS = None
    assert erase_old_messages_task() is None
    assert not Delivery.objects.filter(phone__startswith="erased-").exists()

    settings.RETENTION_DAYS = 90
    assert erase_old_messages_task()["deliveries"] == 5


def test_beat_runs_it_daily_only_when_retention_days_is_set(tmp_path):
    code = (
        "from django.conf import settings as s\n"
        "e = s.CELERY_BEAT_SCHEDULE.get('erase-old-messages')\n"
        "emit(e and [e['task'], str(e['schedule'])])"
    )
    assert shell_json(code, env=program_env(tmp_path), log_dir=tmp_path) is None
    shown = shell_json(code, env=program_env(tmp_path, RETENTION_DAYS="30"), log_dir=tmp_path)
    assert shown[0] == "messaging.erase_old_messages"
    assert "<crontab: 17 3 * * *" in shown[1]


@pytest.mark.django_db
def test_retry_failed_never_sends_to_an_erased_number_and_a_late_callback_suppresses_nothing():
    from messaging.services import blast_create
    from messaging.services.retrying import blast_retry_failed
    from messaging.tests.conftest import make_members
    from suppression.models import FailureEvent, SuppressedContact
    from suppression.services import failure_record

    make_members(2)
    blast = blast_create(body="Hi", community=True)
    Delivery.objects.filter(blast=blast).update(status="failed", error_code=30008)
    Blast.objects.filter(pk=blast.pk).update(status=Blast.Status.FAILED)
    messages_erase_older(days=1, now=timezone.now() + timedelta(days=10))
    erased = Delivery.objects.filter(blast=blast).first()
    assert not erased.phone.startswith("+")

    result = blast_retry_failed(blast_id=blast.pk)
    assert result.retried == 0
    assert result.not_retried == {"the number was erased (data retention)": 2}
    assert Delivery.objects.get(pk=erased.pk).status == "failed"

    assert failure_record(phone=erased.phone, code=21211) == "none"
    assert not SuppressedContact.objects.exists()
    assert not FailureEvent.objects.filter(phone__startswith="erased").exists()
