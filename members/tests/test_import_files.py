"""Contact files on disk: the app's user only, and gone once nobody needs them.

Uploads and problem reports (folders 0700, files 0600), removed when the import is
applied or fails, or by the daily clean-up; the SQLite database and the broker's folders;
the .env `make run` writes.
"""

import os
import shutil
import stat
import subprocess
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db.utils import ConnectionHandler
from django.urls import reverse
from django.utils import timezone

from members.cleanup import import_files_clean
from members.import_jobs import import_job_fail_stalled, job_report_path, job_upload_path
from members.models import ImportJob, Member
from members.tasks import clean_import_files_task
from smsadmin.files import broker_dirs_private

UPLOAD_URL = "/admin/members/member/import/"
# One good row, one invalid: the preview writes a problem report.
CONTENT = b"First Name;Surname;Mobile\r\nAnn;Lee;(201) 555-0123\r\nBo;Ng;nope\r\n"
REPO = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def umask(value: int):
    """The usual umask of a service (022), whatever the test runner's is."""
    before = os.umask(value)
    try:
        yield
    finally:
        os.umask(before)


def job_url(job: ImportJob, view: str = "change") -> str:
    return reverse(f"admin:members_importjob_{view}", args=[job.pk])


def upload(client) -> ImportJob:
    with umask(0o022):
        response = client.post(
            UPLOAD_URL, {"file": SimpleUploadedFile("list.csv", CONTENT, "text/csv")}
        )
    assert response.status_code == 302
    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.PREVIEWED
    return job


def confirm(client, job: ImportJob, capture) -> ImportJob:
    with capture(execute=True):
        client.post(job_url(job, "confirm"))
    job.refresh_from_db()
    return job


def age(job: ImportJob, **delta: float) -> None:
    then = timezone.now() - timedelta(**delta)
    ImportJob.objects.filter(pk=job.pk).update(created_at=then, updated_at=then)


# --- Modes ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_upload_and_its_report_are_the_app_users_only(manager_client, import_dir):
    job = upload(manager_client)

    assert mode(import_dir) == 0o700
    assert mode(job_upload_path(job).parent) == 0o700
    assert mode(job_upload_path(job)) == 0o600
    assert mode(job_report_path(job)) == 0o600


@pytest.mark.django_db
def test_an_import_dir_made_before_is_made_private(manager_client, import_dir):
    import_dir.mkdir(mode=0o755)
    import_dir.chmod(0o755)

    upload(manager_client)

    assert mode(import_dir) == 0o700


def sqlite_connection(path: Path, **options):
    """A connection of its own to a SQLite file, beside the suite's test database."""
    handler = ConnectionHandler(
        {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path), "OPTIONS": options}}
    )
    return handler["default"]


def test_a_sqlite_database_and_its_wal_are_the_app_users_only(tmp_path, django_db_blocker):
    path = tmp_path / "db.sqlite3"
    path.touch(mode=0o644)
    path.chmod(0o644)  # as every database made before this fix
    connection = sqlite_connection(path, init_command="PRAGMA journal_mode=WAL;")
    try:
        with django_db_blocker.unblock(), umask(0o022):
            with connection.cursor() as cursor:
                cursor.execute("CREATE TABLE t (x INTEGER)")
                cursor.execute("INSERT INTO t VALUES (1)")
            modes = {p.name: mode(p) for p in tmp_path.iterdir()}
    finally:
        connection.close()

    assert modes == {"db.sqlite3": 0o600, "db.sqlite3-shm": 0o600, "db.sqlite3-wal": 0o600}


def test_a_new_sqlite_database_is_the_app_users_only(tmp_path, django_db_blocker):
    path = tmp_path / "new.sqlite3"
    connection = sqlite_connection(path)
    try:
        with django_db_blocker.unblock(), umask(0o022):
            connection.ensure_connection()
        assert mode(path) == 0o600
    finally:
        connection.close()


def test_the_filesystem_brokers_folders_are_the_app_users_only(tmp_path):
    broker = tmp_path / "broker"
    for name in ("queue", "processed", "control"):
        (broker / name).mkdir(parents=True, mode=0o755)
        (broker / name).chmod(0o755)
    broker.chmod(0o755)

    broker_dirs_private(
        broker,
        {
            "data_folder_in": str(broker / "queue"),
            "data_folder_out": str(broker / "queue"),
            "processed_folder": str(broker / "processed"),
            "control_folder": str(broker / "control"),
        },
    )

    assert {p.name: mode(p) for p in [broker, *broker.iterdir()]} == {
        "broker": 0o700,
        "queue": 0o700,
        "processed": 0o700,
        "control": 0o700,
    }


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_writes_dot_env_for_its_owner_only(tmp_path):
    subprocess.run(
        ["make", "-s", "-f", str(REPO / "Makefile"), "-C", str(tmp_path), "PYTHON=python3", ".env"],
        check=True,
        capture_output=True,
        preexec_fn=lambda: os.umask(0o022),
    )

    env = tmp_path / ".env"
    assert env.read_text().startswith("SECRET_KEY=")
    assert mode(env) == 0o600


# --- Removed once the import is applied or fails -------------------------------------------


@pytest.mark.django_db
def test_the_upload_goes_once_imported_the_report_stays(
    manager_client, django_capture_on_commit_callbacks
):
    job = upload(manager_client)

    job = confirm(manager_client, job, django_capture_on_commit_callbacks)

    assert job.status == ImportJob.Status.APPLIED
    assert Member.objects.count() == 1
    assert not job_upload_path(job).exists()
    assert mode(job_report_path(job)) == 0o600
    page = manager_client.get(job_url(job)).content.decode()
    assert job_url(job, "problems") in page
    assert manager_client.get(job_url(job, "problems")).status_code == 200


@pytest.mark.django_db
def test_the_files_go_when_the_import_fails(manager_client, django_capture_on_commit_callbacks):
    job = upload(manager_client)
    job_upload_path(job).write_bytes(CONTENT.replace(b"Ann", b"Eve"))  # fails the SHA-256

    job = confirm(manager_client, job, django_capture_on_commit_callbacks)

    assert job.status == ImportJob.Status.FAILED
    assert Member.objects.count() == 0
    assert not job_upload_path(job).parent.exists()


@pytest.mark.django_db
def test_the_files_go_when_the_worker_stopped(manager_client, django_capture_on_commit_callbacks):
    job = upload(manager_client)
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.APPLYING, updated_at=timezone.now() - timedelta(hours=2)
    )
    job.refresh_from_db()

    with django_capture_on_commit_callbacks(execute=True):
        assert import_job_fail_stalled(job=job)

    assert not job_upload_path(job).parent.exists()


# --- The daily clean-up ------------------------------------------------------------------


@pytest.mark.django_db
def test_a_preview_not_confirmed_within_a_day_is_abandoned(manager_client):
    job = upload(manager_client)
    folder = job_upload_path(job).parent
    age(job, hours=25)

    counts = import_files_clean()

    assert counts == {
        "abandoned_jobs": 1,
        "uploads_removed": 1,
        "reports_removed": 1,
        "orphan_folders_removed": 0,
    }
    assert not folder.exists()
    job.refresh_from_db()  # the row stays, as history
    assert job.status == ImportJob.Status.FAILED
    assert job.status_message.startswith("Abandoned: not confirmed within a day")
    assert "upload it again" in job.status_message
    page = manager_client.get(job_url(job)).content.decode()
    assert "Abandoned: not confirmed within a day" in page
    assert job_url(job, "problems") not in page
    assert job_url(job, "confirm") not in page
    # A confirm from a page opened before the clean-up imports nothing.
    manager_client.post(job_url(job, "confirm"))
    assert Member.objects.count() == 0


@pytest.mark.django_db
def test_a_preview_within_its_day_is_kept(manager_client):
    job = upload(manager_client)
    age(job, hours=23)

    assert not any(import_files_clean().values())

    job.refresh_from_db()
    assert job.status == ImportJob.Status.PREVIEWED
    assert job_upload_path(job).exists()
    assert job_report_path(job).exists()


@pytest.mark.django_db
def test_a_job_no_worker_took_up_is_abandoned(manager_client):
    job = upload(manager_client)
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.CONFIRMED)
    age(job, days=2)

    assert import_files_clean()["abandoned_jobs"] == 1

    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED
    assert "no worker took this import up" in job.status_message
    assert not job_upload_path(job).parent.exists()


@pytest.mark.django_db
def test_a_problem_report_is_kept_a_week(manager_client, django_capture_on_commit_callbacks):
    job = confirm(manager_client, upload(manager_client), django_capture_on_commit_callbacks)
    job_upload_path(job).write_bytes(CONTENT)  # as if the removal at import had failed

    age(job, days=6)
    assert import_files_clean()["uploads_removed"] == 1
    assert not job_upload_path(job).exists()
    assert job_report_path(job).exists()

    age(job, days=8)
    assert import_files_clean()["reports_removed"] == 1
    assert not job_upload_path(job).parent.exists()
    job.refresh_from_db()
    assert job.status == ImportJob.Status.APPLIED

    page = manager_client.get(job_url(job)).content.decode()
    assert job_url(job, "problems") not in page
    assert "The problem report (every problem row as CSV) was removed" in page
    assert "&#x27;nope&#x27; has no digits." in page  # the first problems stay listed
    stale_link = manager_client.get(job_url(job, "problems"), follow=True)
    assert stale_link.redirect_chain == [(job_url(job), 302)]
    assert "was removed" in stale_link.content.decode()


@pytest.mark.django_db
def test_a_folder_without_a_job_goes_after_a_day(import_dir):
    old = import_dir / "20250101-old"
    new = import_dir / "20250101-new"
    for folder in (old, new):
        folder.mkdir(parents=True)
        (folder / "upload.csv").write_bytes(CONTENT)
    day_ago = time.time() - 25 * 3600
    os.utime(old, (day_ago, day_ago))

    assert import_files_clean()["orphan_folders_removed"] == 1

    assert not old.exists()
    assert new.exists()


@pytest.mark.django_db
def test_clean_imports_dry_run_changes_nothing(manager_client, capsys):
    job = upload(manager_client)
    age(job, days=2)

    call_command("clean_imports", "--dry-run")

    assert "Would remove the files of 1 abandoned import(s)" in capsys.readouterr().out
    job.refresh_from_db()
    assert job.status == ImportJob.Status.PREVIEWED
    assert job_upload_path(job).exists()

    call_command("clean_imports")

    assert "Removed the files of 1 abandoned import(s)" in capsys.readouterr().out
    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED
    assert not job_upload_path(job).parent.exists()


@pytest.mark.django_db
def test_the_daily_task_cleans(manager_client):
    job = upload(manager_client)
    age(job, days=2)

    assert clean_import_files_task.apply().get()["abandoned_jobs"] == 1
