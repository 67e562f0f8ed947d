"""Consent: how and when a contact agreed to be texted, recorded by every way in."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from events.models import Registration
from members.importing import ImportConsent, import_apply
from members.models import ConsentSource, ImportJob, Member

pytestmark = pytest.mark.django_db


def test_staff_entry_records_who_and_when(manager_client, manager):
    before = timezone.now()
    response = manager_client.post(
        "/admin/members/member/add/",
        {
            "first_name": "Ann",
            "phone": "(201) 555-0123",
            "is_active": "on",
            "consent_source": "staff",
            "consent_evidence": "Agreed at the door",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    member = Member.objects.get()
    assert member.consent_source == ConsentSource.STAFF
    assert member.consent_by == manager
    assert member.consent_at >= before
    assert member.consent_evidence == "Agreed at the door"


def test_add_form_defaults_to_staff_entry(manager_client):
    page = manager_client.get("/admin/members/member/add/").content.decode()
    assert '<option value="staff" selected>' in page


def test_recorded_consent_is_shown_and_read_only(manager_client, admin_user):
    member = Member.objects.create(
        phone="+12015550123",
        consent_source=ConsentSource.KEYWORD,
        consent_at=timezone.now(),
        consent_evidence="JOIN SM123",
    )
    url = f"/admin/members/member/{member.pk}/change/"
    page = manager_client.get(url).content.decode()
    assert "Texted a keyword (JOIN)" in page
    assert "JOIN SM123" in page
    assert 'name="consent_source"' not in page

    manager_client.post(
        url,
        {
            "phone": "+12015550123",
            "is_active": "on",
            "consent_source": "staff",
            "consent_evidence": "forged",
        },
    )
    member.refresh_from_db()
    assert (member.consent_source, member.consent_evidence) == ("keyword", "JOIN SM123")

    changelist = manager_client.get("/admin/members/member/").content.decode()
    assert "Texted a keyword (JOIN)" in changelist


def test_registration_admin_records_consent(manager_client, manager, event):
    response = manager_client.post(
        "/admin/events/registration/add/",
        {
            "event": event.pk,
            "phone": "2015550124",
            "consent_source": "form",
            "consent_evidence": "Paper sign-up sheet",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    reg = Registration.objects.get()
    assert (reg.consent_source, reg.consent_by) == ("form", manager)
    page = manager_client.get("/admin/events/registration/").content.decode()
    assert "Sign-up form" in page


def test_import_records_the_file_and_who_imported_it(manager_client, manager):
    Member.objects.create(
        phone="+12015550125", consent_source="keyword", consent_evidence="JOIN SM1"
    )
    Member.objects.create(phone="+12015550126")  # from before consent was recorded
    content = b"first name,phone\nAnn,2015550123\nOld,2015550125\nBlank,2015550126\n"
    manager_client.post(
        "/admin/members/member/import/",
        {"file": SimpleUploadedFile("spring.csv", content, "text/csv")},
    )
    job = ImportJob.objects.get()
    manager_client.post(reverse("admin:members_importjob_confirm", args=[job.pk]))

    new = Member.objects.get(phone="+12015550123")
    assert new.consent_source == ConsentSource.IMPORT
    assert new.consent_by == manager
    assert new.consent_evidence == f"spring.csv imported by {manager.username} (import #{job.pk})"
    assert new.consent_at is not None
    # An existing consent is never overwritten; a missing one is filled in.
    assert Member.objects.get(phone="+12015550125").consent_evidence == "JOIN SM1"
    assert Member.objects.get(phone="+12015550126").consent_source == ConsentSource.IMPORT


def test_registration_import_records_consent(csv_file, event, admin_user):
    path = csv_file("phone\n2015550123\n")
    import_apply(
        path=path,
        pool=ImportJob.Pool.REGISTRATIONS,
        event_id=event.pk,
        consent=ImportConsent(evidence="signups.csv imported by ana", by=admin_user),
    )
    reg = Registration.objects.get()
    assert (reg.consent_source, reg.consent_evidence, reg.consent_by) == (
        "import",
        "signups.csv imported by ana",
        admin_user,
    )


def test_command_line_import_records_the_file_and_command(csv_file):
    path = csv_file("phone\n2015550123\n", name="list.csv")
    call_command("import_members", str(path), stdout=io.StringIO())
    member = Member.objects.get()
    assert member.consent_source == ConsentSource.IMPORT
    assert member.consent_evidence.startswith("list.csv imported by ")
    assert member.consent_evidence.endswith("(manage.py import_members)")


def test_dry_run_import_records_nothing(csv_file):
    path = csv_file("phone\n2015550123\n")
    call_command("import_members", str(path), "--dry-run", stdout=io.StringIO())
    assert not Member.objects.exists()
