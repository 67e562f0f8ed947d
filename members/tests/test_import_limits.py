"""Oversized headers and cells: a clear message, no 500, nothing big stored or shown.

A header names at most 200 columns, each name at most 1,000 characters; a cell longer
than the csv module's limit is named by its line. The admin upload, the worker and the
command line all give the message and keep nothing big.
"""

import csv
import json
import time
from io import StringIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from members.import_jobs import import_job_create, import_job_run, job_upload_path
from members.importing import ImportFileError, import_preview, inspect_file
from members.models import ImportJob, Member
from members.tasks import run_import_job

pytestmark = pytest.mark.django_db

UPLOAD_URL = "/admin/members/member/import/"
FIELD_LIMIT = csv.field_size_limit()

HUGE_HEADER_CELL = ("phone," + "x" * (FIELD_LIMIT + 10) + "\n2015550123,a\n").encode()
MILLION_COLUMNS = ("phone" + ",c" * 1_300_000 + "\n2015550123\n").encode()
TOO_MANY_COLUMNS = (",".join(["phone"] + [f"c{i}" for i in range(300)]) + "\n2015550123\n").encode()
LONG_HEADER_CELL = ("phone," + "y" * 1500 + "\n2015550123,a\n").encode()
HUGE_DATA_CELL = (
    "first,phone\nAnn,2015550123\n" + "z" * (FIELD_LIMIT + 10) + ",2015550124\n"
).encode()
# No phone column, 150 columns of 900 characters each.
WIDE_NO_PHONE = (",".join(f"col{i:03d}" + "w" * 900 for i in range(150)) + "\nx\n").encode()

REFUSED = [
    pytest.param(
        HUGE_HEADER_CELL,
        "Line 1, the header: a column name is longer than 131,072 characters",
        id="header-cell-over-csv-limit",
    ),
    pytest.param(MILLION_COLUMNS, "Line 1, the header, is longer than", id="1.3M-columns"),
    pytest.param(
        TOO_MANY_COLUMNS,
        "Line 1, the header, has 301 columns; an import takes at most 200.",
        id="301-columns",
    ),
    pytest.param(
        LONG_HEADER_CELL, "column 2 is named by 1,500 characters", id="1500-char-column-name"
    ),
    pytest.param(
        HUGE_DATA_CELL,
        "Line 3: a cell is longer than 131,072 characters",
        id="data-cell-over-csv-limit",
    ),
]


def upload(client, content: bytes):
    return client.post(UPLOAD_URL, {"file": SimpleUploadedFile("big.csv", content, "text/csv")})


def form_errors(response) -> str:
    return " ".join(str(e) for errors in response.context["form"].errors.values() for e in errors)


@pytest.mark.parametrize(("content", "message"), REFUSED)
def test_admin_upload_refuses_with_a_message_and_keeps_nothing(
    manager_client, import_dir, content, message
):
    started = time.monotonic()

    response = upload(manager_client, content)

    assert response.status_code == 200
    errors = form_errors(response)
    assert message in errors
    assert "Nothing was imported." in errors
    assert len(errors) < 600
    assert not ImportJob.objects.exists()
    assert not any(import_dir.rglob("*.csv"))
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(("content", "message"), REFUSED)
@pytest.mark.parametrize("command", ["import_members", "import_registrations"])
def test_command_line_refuses_with_a_message(tmp_path, event, command, content, message):
    path = tmp_path / "big.csv"
    path.write_bytes(content)
    args = [command, str(path)]
    if command == "import_registrations":
        args[1:1] = ["--event", str(event.pk)]

    with pytest.raises(CommandError) as refused:
        call_command(*args, stdout=StringIO())

    assert message in str(refused.value)
    assert "Nothing was written." in str(refused.value)
    assert len(str(refused.value)) < 700
    assert not Member.objects.exists()


def test_no_phone_column_lists_only_the_first_header_cells_shortened(manager_client):
    response = upload(manager_client, WIDE_NO_PHONE)

    errors = form_errors(response)
    assert "No phone column." in errors
    assert "'col000www" in errors
    assert "col019" in errors
    assert "col020" not in errors
    assert "and 130 more." in errors
    assert len(errors) < 2000
    assert not ImportJob.objects.exists()


def test_the_largest_header_allowed_is_stored_and_shown_bounded(manager_client):
    # 200 columns of 1,000 characters each: allowed, but the job keeps a summary.
    header = ["Mobile"] + [f"c{i:03d}" + "v" * 996 for i in range(199)]
    content = (",".join(header) + "\n2015550123\n").encode()

    response = upload(manager_client, content)

    assert response.status_code == 302
    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.PREVIEWED
    assert job.columns["used"] == {"phone": "Mobile"}
    assert len(job.columns["ignored"]) == 50
    assert job.columns["ignored_more"] == 149
    assert len(json.dumps(job.columns)) < 5000
    page = manager_client.get(reverse("admin:members_importjob_change", args=[job.pk]))
    assert "and 149 more." in page.content.decode()
    assert len(page.content) < 100_000


def test_trailing_empty_header_cells_do_not_count(manager_client):
    # A spreadsheet's unused columns come out as a run of empty cells.
    content = ("first,phone" + "," * 500 + "\nAnn,2015550123" + "," * 500 + "\n").encode()

    response = upload(manager_client, content)

    assert response.status_code == 302
    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.PREVIEWED, job.status_message
    assert job.columns["used"] == {"first_name": "first", "phone": "phone"}
    assert job.columns["ignored"] == []
    assert job.new_count == 1


def test_long_cells_in_rows_give_short_reasons(manager_client):
    long = "q" * 100_000
    rows = [f"{long},2015550{i:03d},{long}@example.org" for i in range(60)]
    rows += [f"a,{long}1,a@example.org", f"a,+{'1' * 5000},a@example.org"]
    content = ("first,phone,email\n" + "\n".join(rows) + "\n").encode()

    response = upload(manager_client, content)

    assert response.status_code == 302
    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.PREVIEWED, job.status_message
    assert job.invalid_count == 62
    assert len(job.problems) == 50
    assert len(json.dumps(job.problems)) < 50 * 200
    page = manager_client.get(reverse("admin:members_importjob_change", args=[job.pk]))
    assert len(page.content) < 100_000


def test_long_phone_and_email_reasons_are_cut(csv_file):
    long = "9" * 300
    path = csv_file(f"email,phone\nx{'e' * 300},2015550123\na@example.org,{long}\n")

    summary = import_preview(path=path, pool=ImportJob.Pool.MEMBERS)

    reasons = [p.reason for p in summary.problems]
    assert reasons == [
        f"'x{'e' * 38}…' is not an email address.",
        f"'{'9' * 39}…' is too long to be a phone number.",
    ]


def _job_with_file_replaced(content: bytes) -> ImportJob:
    """A job whose stored file was changed on disk after the upload was checked."""
    job = import_job_create(
        upload=[b"phone\n2015550123\n"],
        file_name="list.csv",
        pool=ImportJob.Pool.MEMBERS,
        event=None,
        user=None,
    )
    job_upload_path(job).write_bytes(content)
    return job


@pytest.mark.parametrize(("content", "message"), REFUSED)
def test_the_worker_marks_the_job_failed_with_the_message(content, message):
    job = _job_with_file_replaced(content)

    run_import_job.apply(args=[job.pk]).get()

    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED
    assert message in job.status_message
    assert len(job.status_message) < 600
    assert len(json.dumps(job.columns)) < 200
    assert job.problems in ([], None)
    assert not Member.objects.exists()


def test_a_failed_job_page_shows_the_message(manager_client):
    job = _job_with_file_replaced(TOO_MANY_COLUMNS)
    import_job_run(job_id=job.pk)

    page = manager_client.get(reverse("admin:members_importjob_change", args=[job.pk]))

    assert page.status_code == 200
    assert "has 301 columns; an import takes at most 200." in page.content.decode()


def test_inspect_file_refuses_a_header_cell_over_the_csv_field_limit(csv_file):
    with pytest.raises(ImportFileError, match="a column name is longer than 131,072"):
        inspect_file(path=csv_file(HUGE_HEADER_CELL))


def test_the_upload_page_states_the_column_limit(manager_client):
    page = manager_client.get(UPLOAD_URL).content.decode()

    assert "At most 200 columns." in page
