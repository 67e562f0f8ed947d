"""Attacks on the compose flow and blast approval: each test is one way to break a promise.

Tests that fail today show a defect (their docstring says what breaks and why it matters
to a manager or a recipient); the others are attacks that held and stay as regression
tests. Real threads for races, real services; failures are injected only at the edge (a
process dying between two writes, another admin deleting a tag at a given moment).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from conftest import STAFF_PASSWORD, make_staff_user
from events.models import Registration
from members.models import Member, Tag
from messaging.models import Blast, Delivery, OutboxMessage
from messaging.segments import segment_info
from messaging.services import lifecycle
from messaging.services.approval import blast_approve, blast_reject
from messaging.services.composing import Audience, blast_preflight
from messaging.services.creating import BlastError, blast_create
from messaging.services.queueing import blast_enqueue
from messaging.services.sweeping import PREPARING_STALE, blasts_sweep
from messaging.tests.conftest import (
    in_thread,
    make_event,
    make_members,
    phone,
    run_threads,
    run_to_end,
)
from smsadmin.roles import ADMIN
from suppression.models import SuppressedContact, UnsubscribedContact
from suppression.services import unsubscribe

pytestmark = pytest.mark.django_db

B = Blast.Status
S = Delivery.Status
OPT_OUT = " Reply STOP to opt out."


def compose_data(body: str, key: str | None = None, **extra) -> dict:
    return {"body": body, "community": "on", "idempotency_key": key or str(uuid.uuid4()), **extra}


def worst_row(blast: Blast) -> tuple[int, int]:
    """(segments, units) of the dearest message the blast actually holds."""
    infos = [
        segment_info(text=b)
        for b in Delivery.objects.filter(blast=blast).values_list("body", flat=True)
    ]
    return max((info.segments, info.units) for info in infos)


@pytest.fixture
def manager(manager_user) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(manager_user)
    return client


@pytest.fixture
def threshold(settings):
    settings.BLAST_APPROVAL_THRESHOLD = 2
    return 2


class WorkerKilled(BaseException):
    """The process dies here (SIGKILL, OOM, deploy): nothing after it runs."""


# =====================================================================================
# Findings: these fail today.
# =====================================================================================


def test_worst_case_misses_a_plain_ascii_name_whose_backtick_forces_ucs2():
    """A backtick is ASCII but not GSM-7. The worst case only renders the ten longest
    names and names with bytes > characters (non-ASCII), so "Jo`" (short, ASCII) is never
    looked at: the panel and the confirm step promise 1 GSM-7 segment while Jo's message
    goes out as UCS-2 in 2 segments. The manager is told the wrong maximum cost."""
    make_members(12)
    Member.objects.create(first_name="Jo`", last_name="", phone=phone(90))
    body = "Hi {first_name}, " + "a" * 100 + OPT_OUT
    result = blast_preflight(body=body, audience=Audience.of(community=True))
    assert result.ok
    blast = blast_create(body=body, community=True)
    assert worst_row(blast) == (2, len("Hi Jo`, ") + 100 + len(OPT_OUT))
    assert result.longest.encoding == "UCS-2"
    assert (result.longest.segments, result.longest.units) >= worst_row(blast)


def test_worst_case_misses_extension_characters_in_an_ascii_name():
    """GSM-7 extension characters (^ { } [ ] ~ | \\) are ASCII yet cost two septets each.
    A short name made of them is neither among the longest by characters nor 'unusual'
    (bytes == characters), so the panel's longest message is 1 segment while the real
    row for that member needs 2: the cost ceiling shown before confirming is too low."""
    make_members(12)
    Member.objects.create(first_name="^^^^^^", last_name="", phone=phone(90))
    body = "a" * 150 + "{first_name}"
    result = blast_preflight(body=body, audience=Audience.of(community=True))
    blast = blast_create(body=body, community=True)
    assert worst_row(blast)[0] == 2
    assert result.longest.segments >= worst_row(blast)[0]


def test_a_long_first_name_with_a_short_last_name_hides_a_message_over_1600(manager):
    """The candidates for the longest message are the ten longest first+last names, but a
    text that repeats {first_name} grows with the first name alone. Ten members with a
    one-letter first name and a 100-letter last name push out the member whose 60-letter
    first name makes their message 1,625 characters. The panel and the review step say
    all is well; only the confirm step fails ("Shorten the text"), after the manager
    was told it would go."""
    Member.objects.bulk_create(
        Member(first_name="A", last_name="B" * 100, phone=phone(i)) for i in range(10)
    )
    Member.objects.create(first_name="C" * 60, last_name="", phone=phone(50))
    body = "{first_name}." * 25 + "x" * 100
    answer = manager.post("/compose/preflight/", {"body": body, "community": "on"}).json()
    confirmed = manager.post("/compose/confirm/", compose_data(body))
    assert confirmed.status_code == 400
    assert "1,625 characters" in confirmed.content.decode()
    # The panel must have said so before the manager confirmed.
    assert not answer["ok"]
    assert "1,625 characters" in " ".join(answer["errors"].get("body", []))


@pytest.mark.parametrize(
    ("body", "sent_length"),
    [
        ("{{" * 800 + "!", 801),  # literal braces: 1,601 typed, 801 sent
        ("Dear {full_name}, " + "a" * 1585, len("Dear Al B, ") + 1585),  # 1,603 typed
    ],
    ids=["literal-braces", "placeholder"],
)
def test_a_text_that_renders_within_1600_is_refused_for_its_typed_length(
    manager, body, sent_length
):
    """The 1,600 limit is Twilio's, on the message sent. blast_check_text applies it to
    the text as typed, placeholders and doubled braces included, so a message every
    recipient would get at 801 (or 1,596) characters is refused with "The message is
    1,601 characters; Twilio takes at most 1,600" - a false statement, and the textarea
    itself allows 3,200 characters precisely so placeholders may shrink."""
    Member.objects.create(first_name="Al", last_name="B", phone=phone(1))
    assert len(body) > 1600 and sent_length <= 1600
    answer = manager.post("/compose/preflight/", {"body": body, "community": "on"}).json()
    assert answer["errors"].get("body") is None, answer["errors"]
    response = manager.post("/compose/confirm/", compose_data(body))
    assert response.status_code == 302
    assert len(Delivery.objects.get().body) == sent_length


@pytest.mark.parametrize(
    ("method", "url", "data"),
    [
        ("post", "/compose/preflight/", {"body": "Hi", "community": "on", "events": "\u00b2"}),
        ("post", "/compose/preflight/", {"body": "Hi", "community": "on", "tags": "\u00b9"}),
        ("get", "/compose/?event=\u00b2", None),
        ("post", "/compose/preflight/", {"body": "Hi", "community": "on", "events": "9" * 23}),
        ("get", "/compose/?event=" + "9" * 23, None),
    ],
    ids=["preflight-events", "preflight-tags", "compose-link", "huge-event", "huge-link"],
)
def test_an_id_the_views_cannot_parse_is_not_a_server_error(manager, method, url, data):
    """The panel and the compose link keep ids with ``str.isdigit()`` and call ``int()``:
    "²" is a digit to isdigit but not to int (ValueError), and a 23-digit id passes both
    and overflows the database integer (OverflowError on SQLite). A crafted or mangled
    link, or a panel request, answers 500 with a traceback instead of a clear message.
    Parse ids with ``isdecimal()`` and a range check, or through the form's fields."""
    make_members(1)
    response = manager.post(url, data) if method == "post" else manager.get(url)
    assert response.status_code in (200, 400)


def test_a_reject_that_dies_after_its_status_update_leaves_no_pending_rows(
    manager_user, admin_user, threshold, monkeypatch
):
    """blast_reject commits 'rejected' first and cancels the rows afterwards, in other
    transactions. A worker killed in between leaves a rejected blast whose rows stay
    'pending' for ever: the blast page and the CSV export show people still waiting to be
    texted, and nothing (not the sweeper, not a second reject, which is refused as
    "already decided") ever finishes the job. Do the UPDATE and the cancellation in one
    transaction, or let the sweeper cancel pending rows of rejected blasts."""
    make_members(4)
    blast = blast_create(
        body="Hi" + OPT_OUT, community=True, created_by=manager_user, approval_above=threshold
    )
    assert blast.status == B.AWAITING_APPROVAL
    real = lifecycle.retry_when_busy

    def dies_before_cancelling(write, *, what, **kwargs):
        if what.startswith("cancelling"):
            raise WorkerKilled
        return real(write, what=what, **kwargs)

    monkeypatch.setattr(lifecycle, "retry_when_busy", dies_before_cancelling)
    with pytest.raises(WorkerKilled):
        blast_reject(blast_id=blast.pk, user=admin_user, note="No")
    monkeypatch.undo()

    blasts_sweep()
    with pytest.raises(BlastError):
        blast_reject(blast_id=blast.pk, user=admin_user, note="No, really")
    blast.refresh_from_db()
    pending = Delivery.objects.filter(blast=blast, status=S.PENDING).count()
    assert blast.status == B.AWAITING_APPROVAL or pending == 0, (blast.status, pending)


def test_a_confirm_retried_after_its_worker_died_is_not_lost(manager, manager_user):
    """The worker creating a blast is killed half-way (a deploy, the OOM killer). The
    manager sees a 502 and submits again. blast_create finds the dead 'preparing' blast
    by its idempotency key and returns it; the page says "This form was already sent:
    here is the blast it created". The sweeper then removes that blast (preparing, no
    progress) and nothing is ever sent, while the manager believes it went. A key whose
    blast is stale-preparing must be taken over (or the manager told to try again)."""
    make_members(3)
    body = "Hi {first_name}" + OPT_OUT
    key = uuid.uuid4()
    dead = Blast.objects.create(
        name="Hi",
        body=body,
        audience_community=True,
        status=B.PREPARING,
        created_by=manager_user,
        idempotency_key=key,
    )
    Delivery.objects.create(blast=dead, phone=phone(0), body="Hi First0" + OPT_OUT)
    Blast.objects.filter(pk=dead.pk).update(
        updated_at=timezone.now() - PREPARING_STALE - timedelta(minutes=1)
    )

    response = manager.post("/compose/confirm/", compose_data(body, key=str(key)), follow=True)
    told_already_sent = "already sent" in response.content.decode()
    blasts_sweep()
    live = Blast.objects.filter(idempotency_key=key).exclude(status=B.PREPARING).first()
    assert live is not None or not told_already_sent, "told 'already sent'; the blast is gone"
    if live is not None:
        assert Delivery.objects.filter(blast=live, status=S.PENDING).count() == 3


def test_an_inactive_member_registered_for_the_event_is_not_counted_as_left_out():
    """An inactive member who registered for the chosen event is texted (through the
    registration), yet the panel and the review step list them as "1 inactive member:
    not included". The breakdown contradicts itself: its lines no longer add up to who
    gets the message, and the manager is misinformed about who is left out."""
    make_members(2)
    Member.objects.create(first_name="Ina", last_name="Ctive", phone=phone(7), is_active=False)
    event = make_event(n=0)
    Registration.objects.create(event=event, first_name="Ina", last_name="Ctive", phone=phone(7))
    audience = Audience.of(community=True, event_ids=[event.pk])
    result = blast_preflight(body="Hi" + OPT_OUT, audience=audience)
    blast = blast_create(body="Hi" + OPT_OUT, community=True, event_ids=[event.pk])
    assert Delivery.objects.filter(blast=blast, phone=phone(7), status=S.PENDING).exists()
    assert result.breakdown.recipients == 3
    assert result.breakdown.inactive == 0


def test_the_approval_messages_count_people_who_are_not_texted(manager, threshold, admin_user):
    """recipient_count includes skipped rows (unsubscribed, suppressed), but the messages
    after confirming ("It goes to N people") and approving ("Approved: sending to N
    people") use it as the number texted. With 2 of 5 members unsubscribed the manager and
    the Admin are told 5 people when 3 are texted - the Admin approves on a wrong number."""
    make_members(5)
    unsubscribe(phone=phone(3), source="keyword", evidence="STOP")
    unsubscribe(phone=phone(4), source="keyword", evidence="STOP")
    page = manager.post("/compose/confirm/", compose_data("Hi" + OPT_OUT), follow=True)
    blast = Blast.objects.get()
    assert blast.status == B.AWAITING_APPROVAL
    assert Delivery.objects.filter(blast=blast, status=S.PENDING).count() == 3
    admin = Client()
    admin.force_login(admin_user)
    approved = admin.post(f"/blasts/{blast.pk}/approve/", follow=True).content.decode()
    assert "It goes to 3 people" in page.content.decode()
    assert "sending to 3 people" in approved


@pytest.mark.django_db(transaction=True)
def test_a_tag_deleted_while_the_blast_is_created_is_a_clear_error(manager_user):
    """Another Admin deletes a tag between the confirm step's checks and the moment the
    blast records its tags. ``audience_tags.set`` then violates the foreign key, and the
    IntegrityError is not a BlastError: the confirm view answers 500 (a traceback) instead
    of "A chosen tag no longer exists; choose the tags again"."""
    members = make_members(3)
    tag = Tag.objects.create(name="Volunteers")
    members[0].tags.add(tag)
    client = Client(raise_request_exception=False)
    client.force_login(manager_user)
    seen: list[str] = []

    def another_admin_deletes_the_tag() -> None:
        Tag.objects.filter(pk=tag.pk).delete()

    def right_after_the_blast_row_is_written(execute, sql, params, many, context):
        # The statement after the blast's INSERT: the blast exists, its tags are not yet
        # recorded. Another Admin (own connection, own transaction) deletes the tag now.
        if seen == ["blast"]:
            seen.append("deleted")
            in_thread(another_admin_deletes_the_tag).join(timeout=30)
        result = execute(sql, params, many, context)
        if not seen and sql.startswith('INSERT INTO "messaging_blast"'):
            seen.append("blast")
        return result

    with connection.execute_wrapper(right_after_the_blast_row_is_written):
        response = client.post("/compose/confirm/", compose_data("Hi" + OPT_OUT, tags=str(tag.pk)))
    assert seen == ["blast", "deleted"]
    assert not Tag.objects.exists()
    assert response.status_code == 400
    assert not Blast.objects.exists()
    assert not Delivery.objects.exists()


# =====================================================================================
# Attacks that held: regression tests.
# =====================================================================================


@pytest.fixture
def crowd():
    """Every kind of person an audience can hold, on two events and two tags."""
    volunteers = Tag.objects.create(name="Volunteers")
    north = Tag.objects.create(name="North side")
    members = make_members(12)
    Member.objects.filter(pk__in=[m.pk for m in members[8:10]]).update(is_active=False)
    for m in members[0:4]:
        m.tags.add(volunteers)
    for m in members[2:6] + members[8:9]:
        m.tags.add(north)  # members 2, 3 have both tags; 8 is inactive and tagged
    picnic = make_event(n=4, start=3, name="Picnic")  # 3..6: duplicates of members
    gala = make_event(n=4, start=5, name="Gala")  # 5..8: duplicates of picnic and members
    make_event(n=3, start=100, name="Other")
    Registration.objects.create(event=gala, first_name="Out", last_name="Sider", phone=phone(200))
    unsubscribe(phone=phone(0), source="keyword", evidence="STOP")
    SuppressedContact.objects.create(phone=phone(0), error_code=21211)  # both
    SuppressedContact.objects.create(phone=phone(5), error_code=21211)
    SuppressedContact.objects.create(phone=phone(6), error_code=21211, lifted=True)
    UnsubscribedContact.objects.create(phone=phone(4), lifted=True, source="keyword")
    unsubscribe(phone=phone(8), source="keyword", evidence="STOP")  # inactive, registered
    return {"volunteers": volunteers, "north": north, "picnic": picnic, "gala": gala}


@pytest.mark.parametrize(
    ("community", "events", "tags"),
    [
        (True, [], []),
        (True, [], ["volunteers"]),
        (True, [], ["volunteers", "north"]),
        (False, ["picnic"], []),
        (False, ["picnic", "gala"], []),
        (True, ["picnic", "gala"], []),
        (True, ["gala"], ["north"]),
        (True, ["picnic", "gala"], ["volunteers", "north"]),
    ],
)
def test_the_panel_counts_exactly_the_rows_blast_create_writes(crowd, community, events, tags):
    """Recipients, unsubscribed, suppressed and people in the panel equal the rows written,
    for every audience shape: tags (a member with two tags once), inactive members,
    duplicates between events and members, a number both unsubscribed and suppressed
    (counted once, as unsubscribed), lifted suppressions and opt-outs (texted)."""
    event_ids = [crowd[e].pk for e in events]
    tag_ids = [crowd[t].pk for t in tags]
    result = blast_preflight(
        body="Hi {first_name}" + OPT_OUT,
        audience=Audience.of(community=community, event_ids=event_ids, tag_ids=tag_ids),
    )
    blast = blast_create(
        body="Hi {first_name}" + OPT_OUT, community=community, event_ids=event_ids, tag_ids=tag_ids
    )
    rows = Delivery.objects.filter(blast=blast)
    b = result.breakdown
    assert b.recipients == rows.filter(status=S.PENDING).count()
    assert b.unsubscribed == rows.filter(skip_reason="unsubscribed").count()
    assert b.suppressed == rows.filter(skip_reason="suppressed").count()
    assert b.people == rows.count() == rows.values("phone").distinct().count()
    assert b.members + b.registrations - b.duplicates == b.people


def test_html_in_names_events_tags_and_the_body_never_reaches_the_panel_unescaped(manager):
    """The panel is put in place with innerHTML: every name, event name and body must be
    escaped, including the list of names that force UCS-2 and the look-alike table."""
    script = "<script>alert(1)</script>"
    Member.objects.create(
        first_name=script + "é", last_name="<img src=x onerror=alert(2)>", phone=phone(1)
    )
    event = make_event(n=0, name="<svg onload=alert(3)>")
    Registration.objects.create(event=event, first_name=script, last_name="", phone=phone(2))
    Tag.objects.create(name="<b onmouseover=alert(4)>")
    body = "<iframe src=javascript:alert(5)> {first_name} {last_name}\u2019" + OPT_OUT
    answer = manager.post(
        "/compose/preflight/", {"body": body, "community": "on", "events": str(event.pk)}
    ).json()
    html = answer["html"]
    for raw in ("<script", "<img", "<svg", "<iframe", "<b "):
        assert raw not in html
    assert "&lt;script&gt;" in html
    page = manager.get("/compose/").content.decode()
    assert "<b onmouseover" not in page
    review = manager.post(
        "/compose/", compose_data("Hi {first_name}" + OPT_OUT, events=str(event.pk))
    ).content.decode()
    assert "<script>alert" not in review and "<svg onload" not in review


@pytest.mark.parametrize(
    "body",
    ["Hi {", "Hi }", "Hi {first_name", "{first_name.__class__}", "{0}", "{}", "{first_name!r}"],
)
def test_stray_braces_and_odd_placeholders_are_clear_errors_and_create_nothing(manager, body):
    make_members(1)
    answer = manager.post("/compose/preflight/", {"body": body, "community": "on"})
    assert answer.status_code == 200
    assert answer.json()["errors"]["body"]
    # The audience is still counted: a stray brace does not hide who gets the text.
    assert answer.json()["recipients"] == 1
    response = manager.post("/compose/confirm/", compose_data(body))
    assert response.status_code == 400
    assert not Blast.objects.exists()


@pytest.mark.parametrize(
    "data",
    [
        {"events": "999999"},
        {"tags": "999999"},
        {"events": "-1"},
        {"events": "abc"},
    ],
)
def test_ids_that_do_not_exist_are_errors_not_crashes(manager, data):
    make_members(1)
    response = manager.post("/compose/preflight/", {"body": "Hi", "community": "on", **data})
    assert response.status_code == 200
    confirm = manager.post("/compose/confirm/", compose_data("Hi" + OPT_OUT, **data))
    assert confirm.status_code == 400
    assert not Blast.objects.exists()


def test_a_message_of_exactly_1600_for_the_longest_name_passes_and_1601_is_refused(manager):
    """The per-recipient limit, at its boundary, in the panel and at confirm alike."""
    make_members(3)
    name = "Bartholomew-Alexander"
    Member.objects.create(first_name=name, last_name="", phone=phone(50))
    for extra, ok in ((0, True), (1, False)):
        body = "{first_name}" + "a" * (1600 - len(name) + extra)
        result = blast_preflight(body=body, audience=Audience.of(community=True))
        assert result.ok is ok
        assert result.longest.characters == 1600 + extra
        assert result.longest_for == name


@pytest.mark.parametrize(
    "name",
    ["\U0001f600", "a\U0001f600", "\U0001f600\U0001f600\U0001f600", "é"],
)
def test_surrogate_pairs_and_non_ascii_names_at_the_ucs2_boundary(name):
    """A pair straddling the 67th unit starts the next part; the panel's worst case over
    non-ASCII names matches the real rows."""
    make_members(12)
    Member.objects.create(first_name=name, last_name="", phone=phone(90))
    body = "x" * 66 + "{first_name}" + "y" * 60
    result = blast_preflight(body=body, audience=Audience.of(community=True))
    blast = blast_create(body=body, community=True)
    assert (result.longest.segments, result.longest.units) == worst_row(blast)


def test_a_blast_awaiting_approval_is_never_sent_by_workers_or_the_sweeper(manager_user, threshold):
    """A stale task, the sweeper and a full send pass leave a waiting blast alone."""
    make_members(4)
    blast = blast_create(
        body="Hi" + OPT_OUT, community=True, created_by=manager_user, approval_above=threshold
    )
    blast_enqueue(blast_id=blast.pk)
    Blast.objects.filter(pk=blast.pk).update(updated_at=timezone.now() - timedelta(hours=2))
    blasts_sweep()
    run_to_end(blast)
    blast.refresh_from_db()
    assert blast.status == B.AWAITING_APPROVAL
    assert not OutboxMessage.objects.exists()
    assert Delivery.objects.filter(blast=blast, status=S.PENDING).count() == 4


def test_someone_who_says_stop_while_the_blast_waits_is_not_texted_after_approval(
    manager_user, admin_user, threshold
):
    make_members(4)
    blast = blast_create(
        body="Hi" + OPT_OUT, community=True, created_by=manager_user, approval_above=threshold
    )
    unsubscribe(phone=phone(2), source="keyword", evidence="STOP")
    blast_approve(blast_id=blast.pk, user=admin_user)
    run_to_end(blast)
    sent_to = set(OutboxMessage.objects.values_list("to", flat=True))
    assert sent_to == {phone(0), phone(1), phone(3)}


def test_a_test_send_to_a_suppressed_number_is_refused(manager, manager_user):
    manager_user.mobile_phone = "+12015559999"
    manager_user.save()
    SuppressedContact.objects.create(phone="+12015559999", error_code=21211)
    make_members(1)
    response = manager.post("/compose/test/", compose_data("Hi {first_name}" + OPT_OUT))
    assert "opt-out or suppression list" in response.content.decode()
    assert not OutboxMessage.objects.exists()


def test_approval_urls_refuse_everyone_but_admins_and_change_nothing(
    manager_user, threshold, django_user_model
):
    make_members(3)
    blast = blast_create(
        body="Hi" + OPT_OUT, community=True, created_by=manager_user, approval_above=threshold
    )
    other_manager = make_staff_user(django_user_model, "tom", "Social manager")
    viewer = django_user_model.objects.create_user(
        "viewer", password=STAFF_PASSWORD, is_staff=True, must_change_password=False
    )
    anonymous = Client()
    assert anonymous.post(f"/blasts/{blast.pk}/approve/").status_code == 302
    assert anonymous.post(f"/blasts/{blast.pk}/reject/").status_code == 302
    c = Client()
    c.force_login(viewer)
    assert c.post(f"/blasts/{blast.pk}/approve/").status_code == 403
    assert c.post(f"/blasts/{blast.pk}/reject/").status_code == 403
    c.force_login(other_manager)
    assert c.post(f"/blasts/{blast.pk}/approve/").status_code == 403
    page = c.post(f"/blasts/{blast.pk}/reject/", follow=True).content.decode()
    assert "Only an Admin, or the blast" in page
    blast.refresh_from_db()
    assert blast.status == B.AWAITING_APPROVAL
    assert blast.reviewed_by is None


@pytest.mark.parametrize("status", [B.QUEUED, B.SENDING, B.SENT, B.CANCELLED, B.PREPARING])
def test_approve_and_reject_on_a_blast_not_waiting_change_nothing(admin_user, status):
    make_members(2)
    blast = blast_create(body="Hi" + OPT_OUT, community=True)
    Blast.objects.filter(pk=blast.pk).update(status=status)
    admin = Client()
    admin.force_login(admin_user)
    for action in ("approve", "reject"):
        page = admin.post(f"/blasts/{blast.pk}/{action}/", follow=True).content.decode()
        assert "no longer waiting for approval" in page
    blast.refresh_from_db()
    assert blast.status == status
    assert blast.reviewed_by is None
    assert not Delivery.objects.filter(blast=blast, status=S.CANCELLED).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("rejecter", ["admin", "author"])
def test_approve_racing_reject_decides_once_and_the_outcome_is_whole(
    settings, django_user_model, rejecter
):
    """Two requests at the same moment: one approves, the other rejects (another Admin or
    the author withdrawing). Exactly one wins, and the rows follow the winner: all sent
    once, or all cancelled with nothing sent."""
    settings.BLAST_APPROVAL_THRESHOLD = 2
    author = make_staff_user(django_user_model, "mia", "Social manager")
    admins = [make_staff_user(django_user_model, f"admin{i}", ADMIN) for i in range(2)]
    make_members(6)
    for round_ in range(4):
        OutboxMessage.objects.all().delete()
        blast = blast_create(
            body=f"Round {round_}" + OPT_OUT, community=True, created_by=author, approval_above=2
        )
        users = [admins[0], admins[1] if rejecter == "admin" else author]

        def decide(i: int, blast_id: int = blast.pk, users: list = users) -> str:
            try:
                if i == 0:
                    blast_approve(blast_id=blast_id, user=users[0])
                else:
                    blast_reject(blast_id=blast_id, user=users[1])
            except BlastError:
                return "refused"
            return "approved" if i == 0 else "rejected"

        outcomes = run_threads(decide, 2)
        assert outcomes.count("refused") == 1, outcomes
        blast = run_to_end(blast)
        rows = Delivery.objects.filter(blast=blast)
        if "approved" in outcomes:
            assert blast.status == B.SENT
            assert OutboxMessage.objects.filter(body__startswith=f"Round {round_}").count() == 6
        else:
            assert blast.status == B.REJECTED
            assert set(rows.values_list("status", flat=True)) == {S.CANCELLED}
            assert not OutboxMessage.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_double_clicked_confirm_with_approval_makes_one_waiting_blast(django_user_model, settings):
    settings.BLAST_APPROVAL_THRESHOLD = 2
    manager_user = make_staff_user(django_user_model, "sam", "Social manager")
    make_members(5)
    data = compose_data("Hi" + OPT_OUT, confirm="1")

    def submit(i: int) -> int:
        client = Client()
        client.force_login(manager_user)
        return client.post("/compose/confirm/", data).status_code

    assert run_threads(submit, 3) == [302] * 3
    blast = Blast.objects.get()
    assert blast.status == B.AWAITING_APPROVAL
    assert Delivery.objects.count() == 5
