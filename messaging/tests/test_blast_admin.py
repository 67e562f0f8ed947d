"""The blast and delivery pages as staff use them: read-only blasts, a confirmed cancel,
no deleting a blast that is still going, and the rows that need a decision."""

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from messaging.models import Blast, Delivery
from messaging.services import blast_create
from messaging.tests.conftest import make_members

pytestmark = pytest.mark.django_db

S = Delivery.Status
B = Blast.Status
BLASTS = reverse("admin:messaging_blast_changelist")
DELIVERIES = reverse("admin:messaging_delivery_changelist")


def change_url(blast: Blast) -> str:
    return reverse("admin:messaging_blast_change", args=[blast.pk])


def delete_url(blast: Blast) -> str:
    return reverse("admin:messaging_blast_delete", args=[blast.pk])


def make_blast(n: int = 3, *, status: str | None = None, rows: str | None = None, start=0):
    """A blast made by the blast service; status and row states set directly (setup only)."""
    make_members(n, start=start)
    blast = blast_create(body="Hello {first_name}", community=True, name=f"Blast {start}")
    if status:
        Blast.objects.filter(pk=blast.pk).update(status=status)
    if rows:
        Delivery.objects.filter(blast=blast).update(status=rows)
    blast.refresh_from_db()
    return blast


def row_ids(blast: Blast) -> list[int]:
    return list(Delivery.objects.filter(blast=blast).order_by("pk").values_list("pk", flat=True))


def statuses(blast: Blast) -> list[str]:
    return list(
        Delivery.objects.filter(blast=blast).order_by("pk").values_list("status", flat=True)
    )


def needing_decision(ids: list[int], attention=Delivery.Attention.AMBIGUOUS) -> None:
    Delivery.objects.filter(pk__in=ids).update(
        status=S.UNKNOWN,
        attention=attention,
        error_message="Twilio's records show two messages to this number.",
    )


def act(client, url, action, ids, **extra):
    data = {"action": action, "_selected_action": ids, **extra}
    return client.post(url, data, follow=True)


def page_text(response) -> str:
    return response.content.decode()


def client_with(django_user_model, username: str, *codenames: str) -> Client:
    user = django_user_model.objects.create_user(username=username, password="x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


# --- 1. A blast cannot be edited once it exists ---------------------------------------------


@pytest.mark.parametrize("who", ["manager_client", "admin_client"])
def test_nobody_can_rewrite_a_sent_blast(request, who):
    client = request.getfixturevalue(who)
    blast = make_blast(status=B.SENT, rows=S.SENT)
    Blast.objects.filter(pk=blast.pk).update(canary_passed=True)
    before = Blast.objects.filter(pk=blast.pk).values().get()

    page = client.get(change_url(blast))
    assert page.status_code == 200
    html = page_text(page)
    assert 'name="body"' not in html
    assert 'name="canary_passed"' not in html
    assert 'name="_save"' not in html
    assert "Sent" in html

    response = client.post(
        change_url(blast),
        {
            "name": "Rewritten",
            "body": "Something else entirely",
            "canary_passed": "",
            "status": B.QUEUED,
            "audience_community": "",
            "_save": "Save",
        },
    )
    assert response.status_code == 403
    assert Blast.objects.filter(pk=blast.pk).values().get() == before
    assert set(statuses(blast)) == {S.SENT}


def test_the_blast_page_shows_plain_words_and_keeps_engine_fields_under_details(admin_client):
    blast = make_blast()
    Blast.objects.filter(pk=blast.pk).update(
        status=B.PAUSED,
        status_reason="Twilio refused the sender: 21606",
        pause_cause=Blast.PauseCause.SENDER,
    )
    html = page_text(admin_client.get(change_url(blast)))
    assert "Paused" in html
    assert "Twilio refused the sender: 21606" in html
    assert "Community members" in html
    details = html[html.index(">Details<") :]
    for internal in (
        "First messages checked",
        "Waiting to be picked up for sending since",
        "Last worked on",
    ):
        assert internal in details, internal
        assert internal not in html[: html.index(">Details<")], internal
    # Engine words and the send task's token never reach the page.
    for word in ("Canary", "Send token", "Enqueued at", "Processing started at"):
        assert word not in html, word
    assert 'class="module aligned collapse"' in html


def test_there_is_no_add_page_for_blasts(admin_client):
    assert admin_client.get(reverse("admin:messaging_blast_add")).status_code == 403


# --- 2. Cancelling asks first ---------------------------------------------------------------


def test_cancel_shows_what_would_not_be_sent_and_cancels_only_when_confirmed(manager_client):
    running = make_blast(3)
    Delivery.objects.filter(pk=row_ids(running)[0]).update(status=S.SENT)
    finished = make_blast(1, status=B.SENT, rows=S.SENT, start=50)
    selected = [running.pk, finished.pk]

    response = act(manager_client, BLASTS, "cancel", selected)
    html = page_text(response)
    assert "Cancel these blasts?" in html
    assert "2 recipients not texted yet" in html  # one of the three already went out
    assert "Already finished, left as they are" in html
    assert 'name="confirm"' in html
    assert "admin/base_site.html" in [t.name for t in response.templates]
    running.refresh_from_db()
    assert running.status == B.QUEUED
    assert statuses(running).count(S.PENDING) == 2

    response = act(manager_client, BLASTS, "cancel", selected, confirm="yes")
    html = page_text(response)
    assert "Cancelled 1 of 2 selected blasts. 2 recipients will not be texted." in html
    assert "The other 1 could not be cancelled" in html
    running.refresh_from_db()
    assert running.status == B.CANCELLED
    assert sorted(statuses(running)) == [S.CANCELLED] * 2 + [S.SENT]
    finished.refresh_from_db()
    assert finished.status == B.SENT


def test_cancelling_only_finished_blasts_says_there_is_nothing_to_cancel(manager_client):
    finished = make_blast(1, status=B.SENT, rows=S.SENT)
    html = page_text(act(manager_client, BLASTS, "cancel", [finished.pk]))
    assert "Nothing to cancel" in html
    assert 'name="confirm"' not in html


def test_staff_without_send_permission_cannot_cancel(django_user_model):
    client = client_with(django_user_model, "viewer", "view_blast")
    blast = make_blast()
    act(client, BLASTS, "cancel", [blast.pk], confirm="yes")
    blast.refresh_from_db()
    assert blast.status == B.QUEUED


# --- 3. Only a finished blast can be deleted -------------------------------------------------


def test_a_sending_blast_cannot_be_deleted_from_its_page(admin_client):
    blast = make_blast(status=B.SENDING)
    assert 'href="' + delete_url(blast) not in page_text(admin_client.get(change_url(blast)))

    response = admin_client.get(delete_url(blast), follow=True)
    assert "Not deleted" in page_text(response)
    assert "is not finished" in page_text(response)
    admin_client.post(delete_url(blast), {"post": "yes"})
    assert Blast.objects.filter(pk=blast.pk).exists()
    assert Delivery.objects.filter(blast=blast).count() == 3


def test_bulk_delete_with_a_sending_blast_deletes_nothing(admin_client):
    sending = make_blast(status=B.SENDING)
    finished = make_blast(1, status=B.SENT, rows=S.SENT, start=50)
    response = act(admin_client, BLASTS, "delete_selected", [sending.pk, finished.pk], post="yes")
    html = page_text(response)
    assert "Nothing was deleted" in html
    assert f"{sending} (sending) is not finished" in html
    assert Blast.objects.filter(pk__in=[sending.pk, finished.pk]).count() == 2


def test_a_finished_blast_can_be_deleted(admin_client):
    blast = make_blast(status=B.SENT, rows=S.SENT)
    assert 'href="' + delete_url(blast) in page_text(admin_client.get(change_url(blast)))
    response = admin_client.post(delete_url(blast), {"post": "yes"}, follow=True)
    assert response.status_code == 200
    assert not Blast.objects.filter(pk=blast.pk).exists()
    assert not Delivery.objects.filter(blast_id=blast.pk).exists()


def test_finished_blasts_can_be_deleted_in_bulk_after_the_usual_confirmation(admin_client):
    sent = make_blast(status=B.SENT, rows=S.SENT)
    cancelled = make_blast(1, status=B.CANCELLED, rows=S.CANCELLED, start=50)
    ids = [sent.pk, cancelled.pk]
    confirm = act(admin_client, BLASTS, "delete_selected", ids)
    assert "Are you sure" in page_text(confirm)
    assert Blast.objects.filter(pk__in=ids).count() == 2

    response = act(admin_client, BLASTS, "delete_selected", ids, post="yes")
    assert "Successfully deleted 2 blasts" in page_text(response)
    assert not Blast.objects.filter(pk__in=ids).exists()


def test_a_manager_cannot_delete_blasts(manager_client):
    blast = make_blast(status=B.SENT, rows=S.SENT)
    assert manager_client.post(delete_url(blast), {"post": "yes"}).status_code == 403
    act(manager_client, BLASTS, "delete_selected", [blast.pk], post="yes")
    assert Blast.objects.filter(pk=blast.pk).exists()


# --- 4. Rows that need a decision ------------------------------------------------------------


def test_blast_list_and_page_show_who_needs_a_decision_with_a_link(manager_client):
    blast = make_blast(4, status=B.SENDING)
    other = make_blast(1, status=B.SENDING, start=50)
    needing_decision(row_ids(blast)[:2])
    needing_decision(row_ids(other)[:1], Delivery.Attention.OVERDUE)
    Delivery.objects.filter(pk=row_ids(blast)[2]).update(status=S.UNKNOWN)  # not handed over

    link = f"{DELIVERIES}?blast__id__exact={blast.pk}&amp;decision=any"
    assert f'<a href="{link}">2 recipients</a>' in page_text(manager_client.get(BLASTS))
    assert f'<a href="{link}">2 recipients</a>' in page_text(manager_client.get(change_url(blast)))

    shown = manager_client.get(link.replace("&amp;", "&")).context["cl"].result_list
    assert sorted(d.pk for d in shown) == row_ids(blast)[:2]


def test_the_blast_list_counts_decisions_without_a_query_per_blast(admin_client):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(BLASTS).status_code == 200
        return len(captured)

    first = make_blast(2, status=B.SENDING)
    needing_decision(row_ids(first))
    admin_client.get(BLASTS)  # warm up per-process caches
    few = queries()
    for n in range(1, 8):
        blast = make_blast(2, status=B.SENDING, start=100 * n)
        needing_decision(row_ids(blast)[:1])
    assert queries() <= few


def test_needs_a_decision_filter_shows_only_those_rows_in_plain_words(manager_client):
    blast = make_blast(5, status=B.SENDING)
    ids = row_ids(blast)
    needing_decision(ids[:1], Delivery.Attention.AMBIGUOUS)
    needing_decision(ids[1:2], Delivery.Attention.OVERDUE)
    Delivery.objects.filter(pk=ids[2]).update(status=S.UNKNOWN)
    Delivery.objects.filter(pk=ids[3]).update(status=S.SENT)

    response = manager_client.get(DELIVERIES, {"decision": "any"})
    assert sorted(d.pk for d in response.context["cl"].result_list) == ids[:2]
    html = page_text(response)
    assert "Outcome unknown for too long" in html
    assert "Twilio&#x27;s records do not say which message is this one" in html

    overdue = manager_client.get(DELIVERIES, {"decision": "overdue"})
    assert [d.pk for d in overdue.context["cl"].result_list] == [ids[1]]
    assert len(manager_client.get(DELIVERIES).context["cl"].result_list) == 5


def test_manager_sends_again_from_the_delivery_list(manager_client):
    blast = make_blast(4, status=B.SENDING)
    ids = row_ids(blast)
    needing_decision(ids[:3])
    Delivery.objects.filter(pk=ids[2]).update(status=S.DELIVERED, attention="")  # settled

    response = act(manager_client, DELIVERIES, "send_again", ids[:3])
    html = page_text(response)
    assert "2 of 3 selected rows will be sent again" in html
    assert "The other 1 was not waiting for a decision" in html
    assert statuses(blast)[:3] == [S.PENDING, S.PENDING, S.DELIVERED]
    assert not Delivery.objects.filter(pk__in=ids[:2]).exclude(attention="").exists()
    assert "sam-manager" in Delivery.objects.get(pk=ids[0]).error_message


def test_send_again_on_a_cancelled_blast_cancels_the_rows(admin_client):
    blast = make_blast(2, status=B.CANCELLED)
    ids = row_ids(blast)
    needing_decision(ids, Delivery.Attention.OVERDUE)

    act(admin_client, DELIVERIES, "send_again", ids)
    assert statuses(blast) == [S.CANCELLED, S.CANCELLED]


def test_manager_marks_rows_sent_and_the_blast_finishes(manager_client):
    blast = make_blast(2, status=B.SENDING, rows=S.DELIVERED)
    ids = row_ids(blast)
    needing_decision(ids[1:])

    html = page_text(act(manager_client, DELIVERIES, "mark_sent", ids))
    assert "1 of 2 selected rows marked as sent" in html
    assert statuses(blast) == [S.DELIVERED, S.SENT]
    blast.refresh_from_db()
    assert blast.status == B.SENT


def test_decisions_need_the_send_permission(django_user_model):
    client = client_with(django_user_model, "viewer", "view_delivery", "view_blast")
    blast = make_blast(2, status=B.SENDING)
    ids = row_ids(blast)
    needing_decision(ids)

    html = page_text(client.get(DELIVERIES))
    assert 'value="send_again"' not in html
    assert 'value="mark_sent"' not in html
    act(client, DELIVERIES, "send_again", ids)
    act(client, DELIVERIES, "mark_sent", ids)
    assert statuses(blast) == [S.UNKNOWN, S.UNKNOWN]


def test_delivery_rows_cannot_be_edited_by_form(admin_client):
    blast = make_blast(1, status=B.SENDING)
    (pk,) = row_ids(blast)
    needing_decision([pk])
    url = reverse("admin:messaging_delivery_change", args=[pk])
    assert admin_client.get(url).status_code == 200
    assert admin_client.post(url, {"status": S.PENDING, "_save": "Save"}).status_code == 403
    assert Delivery.objects.get(pk=pk).status == S.UNKNOWN


def test_no_one_deletes_a_single_delivery_row(admin_client):
    # A row is the record of who was texted; it goes only with its finished blast.
    blast = make_blast(2, status=B.SENT, rows=S.SENT)
    row = Delivery.objects.filter(blast=blast).first()
    url = reverse("admin:messaging_delivery_delete", args=[row.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    response = admin_client.post(
        DELIVERIES, {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"}
    )
    assert response.status_code in (200, 302)
    assert Delivery.objects.filter(pk=row.pk).exists()
