"""The export action: every list that offers it, streamed, safe in a spreadsheet."""

import csv
import io
from datetime import UTC, datetime

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.utils import timezone

from events.models import Event, Registration
from members.importing import import_apply
from members.models import ImportJob, Member
from messaging.models import Blast, Delivery
from smsadmin.csv_export import escape_cell
from smsadmin.models import User
from suppression.models import SuppressedContact, UnsubscribedContact


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=SUM(A1:A9)", "'=SUM(A1:A9)"),
        ("+12015550123", "'+12015550123"),
        ("-5", "'-5"),
        ("@cmd", "'@cmd"),
        ("\tindent", "'\tindent"),
        ("\rreturn", "'\rreturn"),
        ("Ann", "Ann"),
        ("a=b", "a=b"),
        ("'quoted", "'quoted"),
        ("", ""),
        (None, ""),
        (True, "yes"),
        (False, "no"),
        (42, "42"),
        (-1, "'-1"),
    ],
)
def test_escape_cell(value, expected):
    assert escape_cell(value) == expected


def test_datetimes_are_local_and_readable(settings):
    settings.TIME_ZONE = "America/New_York"
    moment = datetime(2026, 7, 4, 16, 0, tzinfo=UTC)

    assert escape_cell(moment) == "2026-07-04 12:00:00-04:00"


def export(client, changelist: str, ids: list[int]) -> list[list[str]]:
    response = client.post(
        changelist, {"action": "export_csv", "_selected_action": [str(i) for i in ids]}
    )
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment; filename=")
    assert response.streaming
    body = b"".join(response.streaming_content).decode("utf-8")
    assert body.startswith("\ufeff")
    return list(csv.reader(io.StringIO(body[1:])))


@pytest.mark.django_db
def test_members_export_selected_escaped_and_importable_again(admin_client, tmp_path):
    evil = Member.objects.create(
        first_name='=HYPERLINK("x")', last_name="@me", phone="+12015550123"
    )
    Member.objects.create(first_name="Not", last_name="Selected", phone="+12015550124")

    rows = export(admin_client, "/admin/members/member/", [evil.pk])

    assert rows[0] == [
        "first name",
        "last name",
        "phone",
        "email",
        "active",
        "notes",
        "tags",
        "created",
        "updated",
        "consent",
        "consent given",
        "consent evidence",
        "consent recorded by",
    ]
    assert rows[1][:5] == ['\'=HYPERLINK("x")', "'@me", "'+12015550123", "", "yes"]
    assert len(rows) == 2

    # The export reads back through the importer unchanged.
    exported = tmp_path / "members.csv"
    with exported.open("w", newline="", encoding="utf-8-sig") as f:
        csv.writer(f).writerows(rows)
    Member.objects.all().delete()
    import_apply(path=exported, pool=ImportJob.Pool.MEMBERS)
    back = Member.objects.get()
    assert (back.first_name, back.last_name, back.phone) == (
        '=HYPERLINK("x")',
        "@me",
        "+12015550123",
    )


@pytest.mark.django_db
def test_registrations_export(admin_client):
    event = Event.objects.create(name="Picnic", starts_at="2026-07-04T12:00:00Z")
    reg = Registration.objects.create(event=event, first_name="Ann", phone="+12015550123")

    rows = export(admin_client, "/admin/events/registration/", [reg.pk])

    assert rows[0][:5] == ["first name", "last name", "phone", "event id", "event"]
    assert rows[1][:5] == ["Ann", "", "'+12015550123", str(event.pk), "Picnic"]


@pytest.mark.django_db
def test_deliveries_export(admin_client):
    blast = Blast.objects.create(name="=cmd|' /C calc'!A0", body="Hi")
    delivery = Delivery.objects.create(
        blast=blast, phone="+12015550123", status=Delivery.Status.FAILED, error_code=30003
    )

    rows = export(admin_client, "/admin/messaging/delivery/", [delivery.pk])

    assert rows[0][:3] == ["blast id", "blast", "phone"]
    assert rows[1][1] == "'=cmd|' /C calc'!A0"
    assert rows[1][5:8] == ["failed", "", "30003"]


@pytest.mark.django_db
def test_unsubscribed_and_suppressed_exports(admin_client, admin_user):
    unsub = UnsubscribedContact.objects.create(
        phone="+12015550123", reason="-STOP", created_by=admin_user
    )
    supp = SuppressedContact.objects.create(phone="+12015550124", error_code=21610)

    unsub_rows = export(admin_client, "/admin/suppression/unsubscribedcontact/", [unsub.pk])
    supp_rows = export(admin_client, "/admin/suppression/suppressedcontact/", [supp.pk])

    assert unsub_rows[1][:3] == ["'+12015550123", "manual", "'-STOP"]
    assert dict(zip(*unsub_rows, strict=True))["added by"] == admin_user.username
    assert supp_rows[1][:3] == ["'+12015550124", "", "21610"]


@pytest.mark.django_db
def test_consent_is_exported_with_members_and_registrations(admin_client, admin_user):
    at = timezone.now()
    member = Member.objects.create(
        phone="+12015550123",
        consent_source="import",
        consent_at=at,
        consent_evidence="spring.csv imported by ana",
        consent_by=admin_user,
    )
    event = Event.objects.create(name="Picnic", starts_at="2026-07-04T12:00:00Z")
    reg = Registration.objects.create(
        event=event, phone="+12015550124", consent_source="keyword", consent_evidence="JOIN SM1"
    )

    member_row = dict(
        zip(*export(admin_client, "/admin/members/member/", [member.pk]), strict=True)
    )
    reg_row = dict(zip(*export(admin_client, "/admin/events/registration/", [reg.pk]), strict=True))

    assert member_row["consent"] == "import"
    assert member_row["consent evidence"] == "spring.csv imported by ana"
    assert member_row["consent recorded by"] == admin_user.username
    assert member_row["consent given"].startswith(f"{timezone.localtime(at):%Y-%m-%d %H:%M}")
    assert (reg_row["consent"], reg_row["consent evidence"]) == ("keyword", "JOIN SM1")
    assert reg_row["consent given"] == ""


@pytest.mark.django_db
def test_export_is_offered_where_named_and_nowhere_else(admin_user):
    request = RequestFactory().get("/")
    request.user = admin_user

    def actions(model):
        return set(admin.site._registry[model].get_actions(request))

    for model in (Member, Registration, Delivery, UnsubscribedContact, SuppressedContact):
        assert "export_csv" in actions(model), model
    for model in (User, Event, Blast, ImportJob):
        assert "export_csv" not in actions(model), model
    assert "lift" in actions(SuppressedContact)


@pytest.mark.django_db
def test_export_needs_view_permission(client, django_user_model):
    user = django_user_model.objects.create_user(username="nobody", password="x", is_staff=True)
    client.force_login(user)
    member = Member.objects.create(phone="+12015550123")

    response = client.post(
        "/admin/members/member/", {"action": "export_csv", "_selected_action": [member.pk]}
    )

    assert response.status_code == 403
