"""The admin pages: button, upload, preview, confirm, progress, problem report."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from events.models import Registration
from members.import_jobs import job_upload_path
from members.models import ImportJob, Member
from smsadmin.roles import SOCIAL_MANAGER_PERMISSIONS

pytestmark = pytest.mark.django_db

UPLOAD_URL = "/admin/members/member/import/"
CONTENT = b"\xef\xbb\xbfFirst Name;Surname;Mobile\r\nAnn;Lee;(201) 555-0123\r\nBo;Ng;nope\r\n"


def upload(client, content: bytes = CONTENT, url: str = UPLOAD_URL, name: str = "list.csv"):
    return client.post(url, {"file": SimpleUploadedFile(name, content, "text/csv")})


def job_url(job: ImportJob, view: str = "change") -> str:
    return reverse(f"admin:members_importjob_{view}", args=[job.pk])


def test_members_changelist_has_an_import_button(manager_client):
    page = manager_client.get("/admin/members/member/")

    assert page.status_code == 200
    assert UPLOAD_URL.encode() in page.content
    assert b"Import CSV" in page.content


def test_event_page_has_an_import_button(manager_client, event):
    page = manager_client.get(f"/admin/events/event/{event.pk}/change/")

    assert f"/admin/events/event/{event.pk}/import/".encode() in page.content


def test_no_button_without_permission(client, django_user_model):
    viewer = django_user_model.objects.create_user(username="v", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_member"))
    client.force_login(viewer)

    assert b"Import CSV" not in client.get("/admin/members/member/").content
    assert client.get(UPLOAD_URL).status_code == 403


def test_social_manager_role_may_import():
    assert {"add_importjob", "view_importjob"} <= set(SOCIAL_MANAGER_PERMISSIONS["members"])


def test_upload_preview_confirm(manager_client, manager):
    form = manager_client.get(UPLOAD_URL)
    assert form.status_code == 200
    assert b"mobile" in form.content  # the aliases are explained

    response = upload(manager_client)

    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == job_url(job)
    assert job.status == ImportJob.Status.PREVIEWED
    assert job.created_by == manager
    assert Member.objects.count() == 0

    page = manager_client.get(job_url(job))
    text = page.content.decode()
    assert "Preview: nothing has been written yet" in text
    assert "<th>New</th><td>1</td>" in text
    assert "<th>Invalid</th><td>1</td>" in text
    assert "<td>3</td><td>invalid</td><td>&#x27;nope&#x27; has no digits.</td>" in text
    assert "Import 1 new and 0 updated members" in text
    assert job_url(job, "problems") in text

    response = manager_client.post(job_url(job, "confirm"))

    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == ImportJob.Status.APPLIED
    assert Member.objects.get().full_name == "Ann Lee"
    assert "Imported" in manager_client.get(job_url(job)).content.decode()


def test_confirm_twice_imports_once(manager_client):
    upload(manager_client)
    job = ImportJob.objects.get()

    manager_client.post(job_url(job, "confirm"))
    response = manager_client.post(job_url(job, "confirm"), follow=True)

    assert b"already confirmed" in response.content
    assert Member.objects.count() == 1


def test_confirm_needs_post(manager_client):
    upload(manager_client)
    job = ImportJob.objects.get()

    assert manager_client.get(job_url(job, "confirm")).status_code == 405


def test_problem_report_download(manager_client):
    upload(manager_client)
    job = ImportJob.objects.get()

    response = manager_client.get(job_url(job, "problems"))

    body = b"".join(response.streaming_content).decode("utf-8-sig")
    assert response["Content-Disposition"] == 'attachment; filename="list-problems.csv"'
    # Every cell quoted, as in every CSV the product writes.
    assert body.splitlines() == [
        '"line","problem","reason","First Name","Surname","Mobile"',
        '"3","invalid","\'nope\' has no digits.","Bo","Ng","nope"',
    ]


def test_event_registrations_import(manager_client, event):
    url = f"/admin/events/event/{event.pk}/import/"
    assert event.name.encode() in manager_client.get(url).content

    upload(manager_client, url=url)
    job = ImportJob.objects.get()
    assert (job.pool, job.event) == (ImportJob.Pool.REGISTRATIONS, event)
    manager_client.post(job_url(job, "confirm"))

    assert Registration.objects.get(event=event).phone == "+12015550123"
    assert Member.objects.count() == 0
    page = manager_client.get(job_url(job)).content.decode()
    assert f"?event__id__exact={event.pk}" in page


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty."),
        (b"first,last\nAnn,Lee\n", "No phone column."),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a text file"),
        (b"PK\x03\x04rest-of-a-zip", "Excel workbook"),
    ],
)
def test_bad_files_get_a_message_and_nothing_is_kept(manager_client, import_dir, content, message):
    response = upload(manager_client, content)

    assert response.status_code == 200
    assert message in response.content.decode()
    assert "Nothing was imported." in response.content.decode()
    assert ImportJob.objects.count() == 0
    assert Member.objects.count() == 0
    assert not import_dir.exists() or list(import_dir.iterdir()) == []


def test_file_over_import_max_bytes_is_refused_before_it_is_stored(
    manager_client, import_dir, settings
):
    settings.IMPORT_MAX_BYTES = 2000
    response = upload(manager_client, b"phone\n" + b"2015550123\n" * 500)

    assert response.status_code == 200
    assert "IMPORT_MAX_BYTES" in response.content.decode()
    assert ImportJob.objects.count() == 0
    assert not import_dir.exists() or list(import_dir.iterdir()) == []


def test_upload_needs_the_csrf_token(manager):
    client = Client(enforce_csrf_checks=True)
    client.force_login(manager)

    assert upload(client).status_code == 403
    assert ImportJob.objects.count() == 0


def test_big_file_shows_progress_then_the_preview(
    manager_client, settings, django_capture_on_commit_callbacks
):
    settings.IMPORT_SYNC_MAX_ROWS = 1
    settings.CELERY_TASK_ALWAYS_EAGER = True

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        upload(manager_client)
    job = ImportJob.objects.get()

    page = manager_client.get(job_url(job)).content.decode()
    assert 'id="import-progress"' in page
    assert job_url(job, "progress") in page
    progress = json.loads(manager_client.get(job_url(job, "progress")).content)
    assert progress == {
        "status": "pending",
        "label": "Waiting to be read",
        "running": True,
        "done": 0,
        "total": 3,
        "hint": "",
    }

    for callback in callbacks:  # the worker runs the task
        callback()

    progress = json.loads(manager_client.get(job_url(job, "progress")).content)
    assert (progress["status"], progress["running"], progress["done"]) == ("previewed", False, 3)
    assert (
        "Preview: nothing has been written yet" in manager_client.get(job_url(job)).content.decode()
    )


def test_progress_hints_at_a_missing_worker(manager_client, settings):
    settings.IMPORT_SYNC_MAX_ROWS = 1
    upload(manager_client)
    job = ImportJob.objects.get()
    ImportJob.objects.filter(pk=job.pk).update(updated_at=job.updated_at - timedelta(minutes=1))

    progress = json.loads(manager_client.get(job_url(job, "progress")).content)

    assert "Is the Celery worker running?" in progress["hint"]


def test_job_list_and_admins_may_delete(
    admin_client, manager_client, django_capture_on_commit_callbacks
):
    upload(manager_client)
    job = ImportJob.objects.get()
    folder = job_upload_path(job).parent

    listing = manager_client.get("/admin/members/importjob/")
    assert listing.status_code == 200
    assert b"list.csv" in listing.content
    assert manager_client.get(job_url(job, "delete")).status_code == 403

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(job_url(job, "delete"), {"post": "yes"})

    assert ImportJob.objects.count() == 0
    assert not folder.exists()
