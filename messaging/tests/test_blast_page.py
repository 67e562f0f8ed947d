"""The blast page as staff use it: who may open it, what it says, its live progress, its
controls (pause, resume, a confirmed cancel), its recipients and their CSV, the approval
block, and the blast list's links to it."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from members.models import Tag
from messaging.models import Blast, Delivery
from messaging.services import blast_create
from messaging.tests.conftest import make_event, make_members, phone, run_to_end, statuses
from messaging.tests.fake_twilio import Reply

pytestmark = pytest.mark.django_db

S = Delivery.Status
B = Blast.Status


def page_url(blast: Blast) -> str:
    return reverse("messaging:blast", args=[blast.pk])


def url(name: str, blast: Blast) -> str:
    return reverse(f"messaging:{name}", args=[blast.pk])


def make_blast(n: int = 3, *, status: str | None = None, **extra) -> Blast:
    make_members(n)
    blast = blast_create(body="Hello {first_name}", community=True, name="Spring news", **extra)
    if status:
        Blast.objects.filter(pk=blast.pk).update(status=status)
        blast.refresh_from_db()
    return blast


def client_with(django_user_model, username: str, *codenames: str) -> Client:
    user = django_user_model.objects.create_user(username=username, password="x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def text(response) -> str:
    return response.content.decode()


def shown_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# --- Who may open it -------------------------------------------------------------------------


def test_anonymous_people_go_to_the_admin_sign_in():
    blast = make_blast()
    for target in (page_url(blast), url("blast_progress", blast), url("blast_export", blast)):
        response = Client().get(target)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_staff_without_view_blast_get_403(django_user_model):
    blast = make_blast()
    client = client_with(django_user_model, "nobody")
    assert client.get(page_url(blast)).status_code == 403
    assert client.get(url("blast_progress", blast)).status_code == 403


def test_a_blast_that_does_not_exist_is_404(admin_client):
    assert admin_client.get(reverse("messaging:blast", args=[999999])).status_code == 404


# --- What it says ----------------------------------------------------------------------------


def test_the_page_shows_status_author_body_audience_and_counts(manager_client, manager_user):
    make_members(4)
    Tag.objects.create(name="volunteers")
    Tag.objects.create(name="north side")
    event = make_event(n=2, start=10, name="Spring Gala")
    event.starts_at = timezone.make_aware(timezone.datetime(2031, 4, 12, 18, 0))
    event.save()
    blast = blast_create(
        body="See you {first_name}!",
        community=True,
        created_by=manager_user,
        name="Gala reminder",
    )
    blast.audience_events.add(event)
    blast.audience_tags.set(Tag.objects.all())
    Delivery.objects.filter(blast=blast, phone=phone(0)).update(status=S.FAILED, error_code=21211)
    Delivery.objects.filter(blast=blast, phone=phone(1)).update(status=S.UNKNOWN)

    response = manager_client.get(page_url(blast))

    assert response.status_code == 200
    page = text(response)
    assert "Gala reminder" in page
    assert "Queued" in page
    assert "sam-manager" in page
    assert "See you {first_name}!" in page
    assert (
        "Community members tagged north side or volunteers; registrations of Spring Gala (Apr 12)"
        in page
    )
    counts = response.context["progress"]["counts"]
    assert counts[S.PENDING] == 2 and counts[S.FAILED] == 1 and counts[S.UNKNOWN] == 1
    assert "Outcome unknown" in page
    assert 'role="progressbar"' in page or "<progress" in page
    assert "21211: Invalid &#x27;To&#x27; Phone Number" in page
    # Breadcrumbs: Home > Blasts > this blast.
    assert reverse("admin:messaging_blast_changelist") in page
    # Staff see plain words, never the engine's.
    assert "claim" not in page.lower()
    assert "canary" not in page.lower()
    assert "awaiting_approval" not in page


def test_the_eta_is_in_words_while_sending_and_absent_otherwise(admin_client, settings):
    settings.SMS_RATE_PER_SECOND = 10
    blast = make_blast(1800)
    response = admin_client.get(url("blast_progress", blast))
    assert response.json()["eta"] == "about 3 minutes"
    assert "about 3 minutes" in text(admin_client.get(page_url(blast)))

    Blast.objects.filter(pk=blast.pk).update(status=B.PAUSED, pause_cause="staff")
    assert admin_client.get(url("blast_progress", blast)).json()["eta"] == ""


def test_scheduled_time_is_shown(admin_client):
    when = timezone.now() + timedelta(days=2)
    blast = make_blast(scheduled_for=when)
    assert blast.status == B.SCHEDULED
    response = admin_client.get(page_url(blast))
    assert "Scheduled for" in text(response)


def test_progress_json_counts_after_sending(admin_client, fake_twilio):
    make_members(10)
    fake_twilio.fail_number(phone(3), 21211)
    fake_twilio.fail_number(phone(4), 21614)
    blast = run_to_end(blast_create(body="Hi", community=True))

    data = admin_client.get(url("blast_progress", blast)).json()

    assert data["status"] == B.PARTIALLY_FAILED
    assert data["final"] is True
    assert data["counts"][S.SENT] == 8
    assert data["counts"][S.FAILED] == 2
    assert data["counts"]["total"] == 10
    assert data["handled"] == 10 and data["percent"] == 100
    assert data["eta"] == ""


def test_a_final_blast_is_not_polled_and_a_running_one_is(admin_client):
    blast = make_blast()
    assert 'data-final="false"' in text(admin_client.get(page_url(blast)))
    Blast.objects.filter(pk=blast.pk).update(status=B.SENT)
    page = text(admin_client.get(page_url(blast)))
    assert 'data-final="true"' in page
    assert "messaging/blast.js" in page


# --- Pause, resume, cancel -------------------------------------------------------------------


def test_buttons_shown_only_where_they_apply(manager_client):
    blast = make_blast()
    page = text(manager_client.get(page_url(blast)))
    assert url("blast_pause", blast) in page
    assert url("blast_resume", blast) not in page
    assert url("blast_cancel", blast) in page

    Blast.objects.filter(pk=blast.pk).update(status=B.PAUSED, pause_cause="staff")
    page = text(manager_client.get(page_url(blast)))
    assert url("blast_pause", blast) not in page
    assert url("blast_resume", blast) in page

    Blast.objects.filter(pk=blast.pk).update(status=B.SENT)
    page = text(manager_client.get(page_url(blast)))
    for name in ("blast_pause", "blast_resume", "blast_cancel"):
        assert url(name, blast) not in page


def test_pause_and_resume_through_the_page(manager_client):
    blast = make_blast()

    response = manager_client.post(url("blast_pause", blast), follow=True)
    blast.refresh_from_db()
    assert blast.status == B.PAUSED
    assert "Paused." in " ".join(shown_messages(response))
    assert response.redirect_chain[-1][0] == page_url(blast)

    response = manager_client.post(url("blast_resume", blast), follow=True)
    blast.refresh_from_db()
    assert blast.status == B.QUEUED
    assert "Resumed" in " ".join(shown_messages(response))


def test_pause_when_it_does_not_apply_changes_nothing_and_says_so(manager_client):
    blast = make_blast(status=B.SENT)
    response = manager_client.post(url("blast_pause", blast), follow=True)
    blast.refresh_from_db()
    assert blast.status == B.SENT
    assert "Nothing was paused: the blast already finished (sent)." in shown_messages(response)

    response = manager_client.post(url("blast_resume", blast), follow=True)
    assert "Nothing was resumed" in " ".join(shown_messages(response))
    blast.refresh_from_db()
    assert blast.status == B.SENT


def test_cancel_asks_first_then_cancels(manager_client):
    blast = make_blast(5)
    Delivery.objects.filter(blast=blast, phone=phone(0)).update(status=S.SENT)

    confirm = manager_client.get(url("blast_cancel", blast))
    assert confirm.status_code == 200
    assert "4 recipients not texted yet" in text(confirm)
    blast.refresh_from_db()
    assert blast.status == B.QUEUED  # asking changed nothing

    response = manager_client.post(url("blast_cancel", blast), follow=True)
    blast.refresh_from_db()
    assert blast.status == B.CANCELLED
    assert statuses(blast) == {S.CANCELLED: 4, S.SENT: 1}
    assert "Cancelled. 4 recipients not texted yet will not be texted." in shown_messages(response)


def test_cancel_of_a_finished_blast_changes_nothing_and_says_so(manager_client):
    blast = make_blast(status=B.SENT)
    response = manager_client.get(url("blast_cancel", blast), follow=True)
    assert "There is nothing to cancel: the blast already finished (sent)." in shown_messages(
        response
    )
    response = manager_client.post(url("blast_cancel", blast), follow=True)
    assert "Nothing was cancelled: the blast already finished (sent)." in shown_messages(response)
    blast.refresh_from_db()
    assert blast.status == B.SENT


def test_without_send_blast_the_page_has_no_buttons_and_posts_are_403(django_user_model):
    blast = make_blast()
    client = client_with(django_user_model, "viewer", "view_blast")
    page = text(client.get(page_url(blast)))
    for name in ("blast_pause", "blast_cancel", "blast_retry_failed"):
        assert url(name, blast) not in page
    for name in ("blast_pause", "blast_resume", "blast_cancel", "blast_retry_failed"):
        assert client.post(url(name, blast)).status_code == 403
    blast.refresh_from_db()
    assert blast.status == B.QUEUED


def test_a_pause_by_the_engine_shows_its_reason_and_what_to_do(manager_client):
    blast = make_blast()
    Blast.objects.filter(pk=blast.pk).update(
        status=B.PAUSED,
        pause_cause=Blast.PauseCause.SENDER,
        status_reason="Paused: Twilio refused the sender or account (20003: Permission Denied).",
    )
    page = text(manager_client.get(page_url(blast)))
    assert "Twilio refused the sender or account" in page
    assert "20003: Permission Denied" in page
    assert "Fix the sender number or the Twilio account, then resume." in page


# --- Recipients ------------------------------------------------------------------------------


def failed_blast() -> Blast:
    blast = make_blast(6)
    Delivery.objects.filter(blast=blast, phone__in=[phone(0), phone(1)]).update(
        status=S.FAILED, error_code=21211
    )
    Delivery.objects.filter(blast=blast, phone=phone(2)).update(status=S.FAILED, error_code=30003)
    Delivery.objects.filter(blast=blast, phone=phone(3)).update(status=S.SENT)
    return blast


def phones_on(response) -> set[str]:
    return {row["phone"] for row in response.context["rows"]}


def test_recipients_filter_by_status_and_by_error_code(admin_client):
    blast = failed_blast()

    response = admin_client.get(page_url(blast), {"status": S.FAILED})
    assert phones_on(response) == {phone(0), phone(1), phone(2)}

    response = admin_client.get(page_url(blast), {"code": "30003"})
    assert phones_on(response) == {phone(2)}
    # The code filter offers the codes present, each with its meaning.
    page = text(response)
    assert "30003: Unreachable destination handset" in page
    assert "21211: Invalid &#x27;To&#x27; Phone Number" in page

    response = admin_client.get(page_url(blast), {"status": S.SENT})
    assert phones_on(response) == {phone(3)}


def test_a_filter_that_is_not_a_choice_shows_everyone_and_says_so(admin_client):
    blast = failed_blast()
    response = admin_client.get(page_url(blast), {"status": "bogus", "code": "abc"})
    assert response.status_code == 200
    assert len(phones_on(response)) == 6
    assert "not one of the choices" in text(response)


def test_recipients_are_paginated(admin_client):
    blast = make_blast(120)
    first = admin_client.get(page_url(blast))
    assert len(first.context["rows"]) == 50
    assert "Page 1 of 3" in text(first)
    last = admin_client.get(page_url(blast), {"page": "3"})
    assert len(last.context["rows"]) == 20


def test_csv_export_has_the_filtered_rows_and_is_formula_safe(admin_client):
    blast = failed_blast()
    Delivery.objects.filter(blast=blast, phone=phone(2)).update(first_name="=HYPERLINK(1)")

    response = admin_client.get(url("blast_export", blast), {"status": S.FAILED})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(body)))
    # The exporter neutralises every cell a spreadsheet could run, "+1..." numbers too.
    assert {row["phone"] for row in rows} == {"'" + phone(i) for i in (0, 1, 2)}
    names = {row["phone"]: row["first name"] for row in rows}
    assert names["'" + phone(2)] == "'=HYPERLINK(1)"
    # The page's export link carries the filters.
    page = text(admin_client.get(page_url(blast), {"status": S.FAILED}))
    assert f"{url('blast_export', blast)}?status=failed" in page


# --- Approval --------------------------------------------------------------------------------


def test_approval_forms_show_to_an_admin_who_is_not_the_author(
    admin_client, manager_client, manager_user
):
    blast = make_blast(status=B.AWAITING_APPROVAL)
    Blast.objects.filter(pk=blast.pk).update(created_by=manager_user)

    page = text(admin_client.get(page_url(blast)))
    assert "waits for an Admin&#x27;s approval" in page
    assert f'action="{url("blast_approve", blast)}"' in page
    assert f'action="{url("blast_reject", blast)}"' in page
    assert page.count('name="note"') == 2
    assert '<label for="approve-note">' in page and '<label for="reject-note">' in page

    # The author withdraws; a manager cannot approve.
    page = text(manager_client.get(page_url(blast)))
    assert url("blast_approve", blast) not in page
    assert f'action="{url("blast_reject", blast)}"' in page
    assert "Withdraw" in page


def test_an_admin_author_withdraws_and_does_not_approve_their_own(admin_client, admin_user):
    blast = make_blast(status=B.AWAITING_APPROVAL)
    Blast.objects.filter(pk=blast.pk).update(created_by=admin_user)
    page = text(admin_client.get(page_url(blast)))
    assert url("blast_approve", blast) not in page
    assert "Withdraw" in page


def test_a_manager_who_is_not_the_author_sees_no_approval_forms(manager_client, admin_user):
    blast = make_blast(status=B.AWAITING_APPROVAL)
    Blast.objects.filter(pk=blast.pk).update(created_by=admin_user)
    page = text(manager_client.get(page_url(blast)))
    assert "waits for an Admin&#x27;s approval" in page
    assert url("blast_approve", blast) not in page
    assert url("blast_reject", blast) not in page


def test_the_review_is_shown_once_reviewed(manager_client, admin_user):
    blast = make_blast(status=B.REJECTED)
    Blast.objects.filter(pk=blast.pk).update(
        reviewed_by=admin_user, reviewed_at=timezone.now(), review_note="Too late at night."
    )
    page = text(manager_client.get(page_url(blast)))
    assert "Rejected" in page
    assert "alice-admin" in page
    assert "Too late at night." in page


# --- The blast list and the change page ------------------------------------------------------


def test_the_list_links_each_blast_to_its_page_and_offers_compose(manager_client):
    blast = make_blast()
    page = text(manager_client.get(reverse("admin:messaging_blast_changelist")))
    assert f'href="{page_url(blast)}"' in page
    assert f'href="{reverse("messaging:compose")}"' in page
    assert "Compose a blast" in page


def test_compose_is_not_offered_without_send_blast(django_user_model):
    make_blast()
    client = client_with(django_user_model, "viewer", "view_blast")
    page = text(client.get(reverse("admin:messaging_blast_changelist")))
    assert "Compose a blast" not in page


def test_the_admin_change_page_links_to_the_blast_page(manager_client):
    blast = make_blast()
    page = text(manager_client.get(reverse("admin:messaging_blast_change", args=[blast.pk])))
    assert "Open the blast page" in page
    assert f'href="{page_url(blast)}"' in page


# --- Query bounds with a big blast -----------------------------------------------------------


@pytest.fixture
def big_blast(admin_user) -> Blast:
    """A 100k-row blast, written directly (creating it is not under test): 10k rows by
    bulk_create, then copied nine times with other numbers by INSERT ... SELECT, which
    takes seconds where the ORM alone takes most of a minute."""
    blast = Blast.objects.create(
        name="Big", body="Hello", audience_community=True, status=B.SENDING, created_by=admin_user
    )
    codes = [21211, 30003, 30008, 21614]
    rows: list[Delivery] = []
    for i in range(10_000):
        status = (S.SENT, S.PENDING, S.FAILED, S.DELIVERED)[i % 4]
        rows.append(
            Delivery(
                blast=blast,
                phone=f"+1201300{i:04d}",
                first_name=f"F{i}",
                status=status,
                error_code=codes[(i // 4) % 4] if status == S.FAILED else None,
            )
        )
    Delivery.objects.bulk_create(rows, batch_size=2000)
    columns = (
        "blast_id, first_name, last_name, status, skip_reason, body, twilio_status, "
        "error_code, error_message, attempts, sender_refusals, attention, created_at, updated_at"
    )
    table = Delivery._meta.db_table
    with connection.cursor() as cursor:
        for copy in range(1, 10):
            # "+1201300" + 4 digits becomes "+1201" + (300 + copy) + the same 4 digits.
            cursor.execute(
                f"INSERT INTO {table} (phone, {columns}) "  # noqa: S608 - constants
                f"SELECT substr(phone, 1, 5) || %s || substr(phone, 9), {columns} "
                f"FROM {table} WHERE blast_id = %s AND substr(phone, 6, 3) = '300'",
                [str(300 + copy), blast.pk],
            )
    Blast.objects.filter(pk=blast.pk).update(recipient_count=100_000)
    blast.refresh_from_db()
    return blast


def test_pages_answer_in_a_bounded_number_of_queries_for_a_100k_blast(
    admin_client, big_blast, django_assert_max_num_queries
):
    with django_assert_max_num_queries(15):
        response = admin_client.get(page_url(big_blast))
    assert response.context["progress"]["counts"]["total"] == 100_000
    with django_assert_max_num_queries(15):
        response = admin_client.get(page_url(big_blast), {"status": S.FAILED, "code": "30003"})
    assert response.context["page"].paginator.count == 6250
    with django_assert_max_num_queries(6):
        response = admin_client.get(url("blast_progress", big_blast))
    assert response.json()["counts"][S.PENDING] == 25_000
    with django_assert_max_num_queries(20):
        response = admin_client.get(reverse("admin:index"))
    assert response.status_code == 200


def test_the_page_at_phone_width_keeps_the_table_in_its_own_box(admin_client):
    # What the browser needs for 390 px: the viewport tag from the admin's base, the
    # table inside a scrolling (or stacking) container, and the page's own stylesheet.
    blast = make_blast()
    page = text(admin_client.get(page_url(blast)))
    assert 'name="viewport"' in page
    assert 'class="blast-table-wrap"' in page
    assert "messaging/blast.css" in page


def test_sending_with_failures_then_the_page_offers_retry(manager_client, fake_twilio):
    make_members(5)
    fake_twilio.script(Reply(status=400, code=30008, only_to=phone(1)))
    blast = run_to_end(blast_create(body="Hi", community=True))
    assert blast.status == B.PARTIALLY_FAILED
    page = text(manager_client.get(page_url(blast)))
    assert url("blast_retry_failed", blast) in page
