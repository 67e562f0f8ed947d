"""An upload kept from preview to confirm: exactness, idempotence, the worker path."""

import hashlib
from collections.abc import Iterable
from datetime import timedelta

import pytest
from django.utils import timezone

from members import import_jobs
from members.import_jobs import (
    import_job_confirm,
    import_job_create,
    import_job_fail_stalled,
    import_job_run,
    import_job_start,
    job_report_path,
    job_upload_path,
)
from members.importing import ImportFileError
from members.models import ImportJob, Member
from members.tasks import run_import_job

pytestmark = pytest.mark.django_db

MEMBERS = ImportJob.Pool.MEMBERS
CONTENT = (
    b"first,phone\n"
    b"Annie,2015550123\n"  # updates Ann
    b"Bo,2015550124\n"  # new
    b"bad,12345\n"  # invalid
    b"Bo,201-555-0124\n"  # duplicate
)


def create(content: bytes | Iterable[bytes] = CONTENT) -> ImportJob:
    chunks = [content] if isinstance(content, bytes) else content
    return import_job_create(
        upload=chunks, file_name="list.csv", pool=MEMBERS, event=None, user=None
    )


def previewed(content: bytes = CONTENT) -> ImportJob:
    job = create(content)
    import_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.PREVIEWED, job.status_message
    return job


def confirm_and_run(job: ImportJob) -> ImportJob:
    assert import_job_confirm(job_id=job.pk)
    import_job_run(job_id=job.pk)
    job.refresh_from_db()
    return job


@pytest.fixture(autouse=True)
def ann(db) -> Member:
    return Member.objects.create(first_name="Ann", phone="+12015550123")


def test_create_keeps_the_file_with_its_fingerprint(import_dir):
    job = create()

    assert job.status == ImportJob.Status.PENDING
    assert job_upload_path(job).read_bytes() == CONTENT
    assert job.sha256 == hashlib.sha256(CONTENT).hexdigest()
    assert job.line_count == 5
    assert job.columns == {"used": {"first_name": "first", "phone": "phone"}, "ignored": []}


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"first,last\nA,B\n", "No phone column"), (b"\x00\x01", "not a text")],
)
def test_create_refuses_bad_files_and_keeps_nothing(import_dir, content, message):
    with pytest.raises(ImportFileError, match=message):
        create(content)

    assert ImportJob.objects.count() == 0
    assert list(import_dir.iterdir()) == []


def test_create_stops_copying_past_import_max_bytes(import_dir, settings):
    settings.IMPORT_MAX_BYTES = 1000
    chunks = (b"phone\n" + b"2015550123\n" * 50 for _ in range(100))

    with pytest.raises(ImportFileError, match="IMPORT_MAX_BYTES"):
        create(chunks)

    assert ImportJob.objects.count() == 0
    assert list(import_dir.iterdir()) == []


def test_preview_records_counts_and_problems_and_writes_no_contact():
    job = previewed()

    assert job.counts() == {
        "rows": 4,
        "new": 1,
        "updated": 1,
        "unchanged": 0,
        "invalid": 1,
        "duplicate": 1,
        "blank": 0,
        "unsubscribed": 0,
        "suppressed": 0,
    }
    assert job.problems == [
        [4, "invalid", "'12345' is too short to be a phone number."],
        [5, "duplicate", "Same phone as line 3, which is kept."],
    ]
    assert job_report_path(job).exists()
    assert Member.objects.count() == 1
    assert Member.objects.get().first_name == "Ann"


def test_preview_without_problems_keeps_no_report():
    job = previewed(b"phone\n2015550199\n")

    assert not job_report_path(job).exists()


def test_confirm_applies_exactly_the_preview():
    job = previewed()
    planned = job.counts()

    job = confirm_and_run(job)

    assert job.status == ImportJob.Status.APPLIED
    assert job.status_message == ""
    assert job.counts() == planned
    assert job.applied_at is not None
    assert Member.objects.count() == 2
    assert Member.objects.get(phone="+12015550123").first_name == "Annie"


def test_database_changed_since_preview_writes_nothing_and_shows_a_new_preview():
    job = previewed()
    Member.objects.create(first_name="Bo", phone="+12015550124")  # was "new" in the preview

    job = confirm_and_run(job)

    assert job.status == ImportJob.Status.PREVIEWED
    assert "Nothing was imported" in job.status_message
    assert "new 1 -> 0" in job.status_message
    assert "unchanged 0 -> 1" in job.status_message
    assert (job.new_count, job.updated_count, job.unchanged_count) == (0, 1, 1)
    assert Member.objects.get(phone="+12015550123").first_name == "Ann"  # untouched

    job = confirm_and_run(job)  # the user confirms the new preview

    assert job.status == ImportJob.Status.APPLIED
    assert Member.objects.get(phone="+12015550123").first_name == "Annie"


def test_same_counts_for_different_contacts_are_still_a_change():
    job = previewed(b"phone\n2015550124\n2015550125\n")  # both new
    Member.objects.filter(phone="+12015550123").delete()
    Member.objects.create(phone="+12015550124")  # now one new, one unchanged...
    Member.objects.filter(phone="+12015550124").delete()
    Member.objects.create(phone="+12015550125")

    job = confirm_and_run(job)

    assert job.status == ImportJob.Status.PREVIEWED
    assert Member.objects.count() == 1


def test_a_change_during_the_writes_is_reported(monkeypatch):
    job = previewed()
    real_apply = import_jobs.import_apply

    def someone_adds_bo_first(**kwargs):
        Member.objects.create(first_name="Bo", phone="+12015550124")
        return real_apply(**kwargs)

    monkeypatch.setattr(import_jobs, "import_apply", someone_adds_bo_first)

    job = confirm_and_run(job)

    assert job.status == ImportJob.Status.APPLIED
    assert "differs from the preview (new 1 -> 0, unchanged 0 -> 1)" in job.status_message
    assert Member.objects.filter(phone="+12015550124").count() == 1


def test_stored_file_altered_after_preview_fails_and_writes_nothing():
    job = previewed()
    job_upload_path(job).write_bytes(CONTENT.replace(b"Annie", b"Eve"))

    job = confirm_and_run(job)

    assert job.status == ImportJob.Status.FAILED
    assert "SHA-256" in job.status_message
    assert Member.objects.get(phone="+12015550123").first_name == "Ann"


def test_confirm_only_once():
    job = previewed()

    assert import_job_confirm(job_id=job.pk)
    assert not import_job_confirm(job_id=job.pk)


def test_running_twice_does_the_work_once(monkeypatch):
    job = previewed()
    import_job_confirm(job_id=job.pk)
    calls = []
    real_apply = import_jobs._apply_job
    monkeypatch.setattr(import_jobs, "_apply_job", lambda j: (calls.append(j.pk), real_apply(j)))

    run_import_job(job.pk)
    run_import_job(job.pk)

    assert calls == [job.pk]
    job.refresh_from_db()
    assert job.status == ImportJob.Status.APPLIED


def test_unexpected_error_fails_the_job_with_a_message(monkeypatch):
    job = create()

    def explode(**kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(import_jobs, "import_preview", explode)
    import_job_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED
    assert "RuntimeError" in job.status_message
    assert "Nothing was written" in job.status_message


def test_small_file_is_done_within_the_request(settings, django_capture_on_commit_callbacks):
    settings.IMPORT_SYNC_MAX_ROWS = 10
    job = create()

    with django_capture_on_commit_callbacks() as callbacks:
        import_job_start(job=job)

    assert callbacks == []
    job.refresh_from_db()
    assert job.status == ImportJob.Status.PREVIEWED


def test_big_file_goes_to_the_worker_after_commit(settings, django_capture_on_commit_callbacks):
    settings.IMPORT_SYNC_MAX_ROWS = 2
    settings.CELERY_TASK_ALWAYS_EAGER = True
    job = create()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        import_job_start(job=job)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.PENDING  # nothing before the commit
    for callback in callbacks:
        callback()

    job.refresh_from_db()
    assert job.status == ImportJob.Status.PREVIEWED
    assert job.progress_done == job.progress_total == job.line_count

    import_job_confirm(job_id=job.pk)
    job.refresh_from_db()
    assert job.progress_done == 0  # the bar starts over while it waits for a worker
    with django_capture_on_commit_callbacks(execute=True):
        import_job_start(job=job)

    job.refresh_from_db()
    assert job.status == ImportJob.Status.APPLIED
    assert job.progress_done == job.progress_total == 2 * job.line_count
    assert Member.objects.count() == 2


def test_a_stalled_job_is_failed_with_an_honest_message(settings):
    job = previewed()
    import_job_confirm(job_id=job.pk)
    long_ago = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 120)
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.APPLYING, updated_at=long_ago, progress_done=6
    )
    job.refresh_from_db()

    assert import_job_fail_stalled(job=job)

    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED
    assert "after line 3 of 5" in job.status_message
    assert "again is safe" in job.status_message


def test_a_job_with_fresh_progress_is_not_stalled():
    job = create()
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.PREVIEWING)
    job.refresh_from_db()

    assert not import_job_fail_stalled(job=job)


def test_deleting_a_job_removes_its_files(django_capture_on_commit_callbacks):
    job = previewed()
    folder = job_upload_path(job).parent

    with django_capture_on_commit_callbacks(execute=True):
        job.delete()

    assert not folder.exists()
