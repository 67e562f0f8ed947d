"""Every CSV the product writes is safe in a spreadsheet, whatever its separator and trimming.

A cell is written quoted, and a formula character at its start or after a ``;``, ``,`` or
tab inside it (behind spaces or quotes) gets an apostrophe, so a reader that splits on
``;`` (LibreOffice, Excel in much of Europe) or trims the cell never sees a formula.
"""

import csv
import io
import re
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse

from events.models import Event, Registration
from members.importing import import_apply
from members.models import ImportJob, Member, Tag
from messaging.models import Blast, Delivery
from smsadmin.csv_export import escape_cell, unescape_cell
from suppression.models import SuppressedContact, UnsubscribedContact

pytestmark = pytest.mark.django_db

# Each got through the guard as it was before the security review.
BYPASSES = [
    "Bob;=1+1;",
    '"=1+1',
    "  =1+1",
    "\u00a0=1+1",
    "x,@SUM(A1)",
    "a\t=1",
    "\uff1d1+1",  # full-width =
    "-2+3",
    "@cmd",
]
FORMULA_START = tuple("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
PROJECT = Path(__file__).resolve().parents[2]


def phone(i: int) -> str:
    return f"+1201555{i:04d}"


def assert_inert(text: str) -> None:
    """No field, however the file is split, starts with a formula character.

    Read with Python's csv module on ``;`` and ``,`` (spaces after the separator
    skipped), and split naively, ignoring quotes, on ``;``, ``,``, tab and line breaks.
    Each field is stripped of whitespace (the no-break space too) and double quotes.
    """
    text = text.lstrip("\ufeff")
    fields: list[str] = []
    for delimiter in (";", ","):
        reader = csv.reader(
            io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True
        )
        fields += [field for row in reader for field in row]
    fields += re.split(r"[;,\t\r\n]", text)
    assert fields
    for field in fields:
        bare = field.strip().strip('"').strip()
        assert not bare.startswith(FORMULA_START), (field, text)


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.lstrip("\ufeff"), newline="")))


def assert_all_quoted(text: str) -> None:
    for line in text.lstrip("\ufeff").splitlines():
        if line:
            assert line.startswith('"') and line.endswith('"'), line


# --- The writers ----------------------------------------------------------------------


def _admin_export(client, changelist: str, ids: list[int]) -> str:
    response = client.post(
        changelist, {"action": "export_csv", "_selected_action": [str(i) for i in ids]}
    )
    assert response.status_code == 200
    return b"".join(response.streaming_content).decode("utf-8")


def members_export(client, tmp_path) -> str:
    ids = []
    for i, value in enumerate(BYPASSES):
        member = Member.objects.create(
            first_name=value, last_name=value, notes=value, email=value, phone=phone(i)
        )
        member.tags.add(Tag.objects.create(name=f"t{i}{value}"))
        ids.append(member.pk)
    return _admin_export(client, "/admin/members/member/", ids)


def registrations_export(client, tmp_path) -> str:
    ids = []
    for i, value in enumerate(BYPASSES):
        event = Event.objects.create(name=value, starts_at="2026-07-04T12:00:00Z")
        reg = Registration.objects.create(
            event=event, first_name=value, last_name=value, phone=phone(i)
        )
        ids.append(reg.pk)
    return _admin_export(client, "/admin/events/registration/", ids)


def _deliveries() -> list[Delivery]:
    deliveries = []
    for i, value in enumerate(BYPASSES):
        blast = Blast.objects.create(name=value, body="Hi")
        deliveries.append(
            Delivery.objects.create(
                blast=blast,
                phone=phone(i),
                first_name=value,
                last_name=value,
                error_message=value,
                twilio_status=value,
                status=Delivery.Status.FAILED,
            )
        )
    return deliveries


def deliveries_export(client, tmp_path) -> str:
    ids = [d.pk for d in _deliveries()]
    return _admin_export(client, "/admin/messaging/delivery/", ids)


def unsubscribed_export(client, tmp_path) -> str:
    ids = [
        UnsubscribedContact.objects.create(
            phone=phone(i), reason=value, evidence=value, lift_reason=value, lift_evidence=value
        ).pk
        for i, value in enumerate(BYPASSES)
    ]
    return _admin_export(client, "/admin/suppression/unsubscribedcontact/", ids)


def suppressed_export(client, tmp_path) -> str:
    ids = [
        SuppressedContact.objects.create(
            phone=phone(i), reason=value, error_meaning=value, lift_reason=value
        ).pk
        for i, value in enumerate(BYPASSES)
    ]
    return _admin_export(client, "/admin/suppression/suppressedcontact/", ids)


def blast_recipients_export(client, tmp_path) -> str:
    blast = Blast.objects.create(name="Spring", body="Hi")
    for i, value in enumerate(BYPASSES):
        Delivery.objects.create(
            blast=blast, phone=phone(i), first_name=value, last_name=value, error_message=value
        )
    response = client.get(reverse("messaging:blast_export", args=[blast.pk]))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    return b"".join(response.streaming_content).decode("utf-8")


# Rows in error: a bad phone, each bypass in every other cell (and as a column name).
PROBLEM_FILE = "first,last,phone,notes\n" + "".join(
    f"{csv_line},{csv_line},bad{i},{csv_line}\n"
    for i, csv_line in enumerate('"' + value.replace('"', '""') + '"' for value in BYPASSES)
)


def import_problem_report(client, tmp_path) -> str:
    """The admin's download of the rows in error of an upload."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("list.csv", PROBLEM_FILE.encode(), content_type="text/csv")
    response = client.post("/admin/members/member/import/", {"file": upload})
    assert response.status_code == 302, response.content[:2000]
    job = ImportJob.objects.get()
    assert job.invalid_count == len(BYPASSES)
    response = client.get(reverse("admin:members_importjob_problems", args=[job.pk]))
    assert response.status_code == 200
    return b"".join(response.streaming_content).decode("utf-8")


def command_problem_report(client, tmp_path) -> str:
    """manage.py import_members --errors FILE."""
    source = tmp_path / "list.csv"
    source.write_text(PROBLEM_FILE, encoding="utf-8")
    report = tmp_path / "problems.csv"
    call_command("import_members", str(source), "--errors", str(report), stdout=io.StringIO())
    return report.read_text(encoding="utf-8")


WRITERS = [
    members_export,
    registrations_export,
    deliveries_export,
    unsubscribed_export,
    suppressed_export,
    blast_recipients_export,
    import_problem_report,
    command_problem_report,
]


@pytest.mark.parametrize("writer", WRITERS, ids=lambda w: w.__name__)
def test_every_csv_the_product_writes_is_inert_in_any_spreadsheet(writer, admin_client, tmp_path):
    text = writer(admin_client, tmp_path)

    assert_inert(text)
    assert_all_quoted(text)
    # The values are all there, each only marked with an apostrophe.
    cells = {cell for row in rows_of(text) for cell in row}
    for value in BYPASSES:
        assert escape_cell(value) in cells, value


def test_the_problem_report_imports_back_as_it_was(admin_client, tmp_path):
    report = command_problem_report(admin_client, tmp_path)

    header, *rows = rows_of(report)
    assert header == ["line", "problem", "reason", "first", "last", "phone", "notes"]
    assert [unescape_cell(row[3]) for row in rows] == BYPASSES


def test_an_export_of_every_bypass_imports_back_unchanged(admin_client, tmp_path):
    # A tags cell holds several, "; " between them: each may start a formula.
    tags = [Tag.objects.create(name=name) for name in ("=cmd", "@home", "-x", "\uff0bwide")]
    for i, value in enumerate(BYPASSES):
        member = Member.objects.create(first_name=value, last_name=value, phone=phone(i))
        member.tags.add(*tags)
    ids = list(Member.objects.values_list("pk", flat=True))
    exported = tmp_path / "members.csv"
    exported.write_text(_admin_export(admin_client, "/admin/members/member/", ids))
    Member.objects.all().delete()

    summary = import_apply(path=exported, pool=ImportJob.Pool.MEMBERS)

    assert (summary.new, summary.invalid) == (len(BYPASSES), 0)
    # Names are trimmed on import, as any imported cell is.
    assert {(m.first_name, m.last_name) for m in Member.objects.all()} == {
        (value.strip(), value.strip()) for value in BYPASSES
    }
    for member in Member.objects.all():
        assert {tag.name for tag in member.tags.all()} == {"=cmd", "@home", "-x", "\uff0bwide"}
    assert Tag.objects.count() == 4


def test_no_module_writes_csv_but_through_the_guard():
    """csv.writer appears in one place, csv_export.csv_writer; every writer calls it."""
    allowed = PROJECT / "smsadmin" / "csv_export.py"
    offenders = []
    for app in ("smsadmin", "members", "events", "messaging", "suppression"):
        for path in (PROJECT / app).rglob("*.py"):
            if "tests" in path.parts or "migrations" in path.parts or path == allowed:
                continue
            source = path.read_text(encoding="utf-8")
            if re.search(r"csv\.(writer|DictWriter)\b|from csv import", source):
                offenders.append(str(path.relative_to(PROJECT)))
    assert offenders == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Bob;=1+1;", "Bob;'=1+1;"),
        ('"=1+1', "\"'=1+1"),
        ("  =1+1", "  '=1+1"),
        ("\u00a0=1+1", "\u00a0'=1+1"),
        ("x,@SUM(A1)", "x,'@SUM(A1)"),
        ("a\t=1", "a\t'=1"),
        ("\uff1d1+1", "'\uff1d1+1"),
        ("a; -2", "a; '-2"),
        ("x,\u3000\uff20y", "x,\u3000'\uff20y"),
        ("'=already", "''=already"),
        ("2026-07-04 12:00:00-04:00", "2026-07-04 12:00:00-04:00"),
        ("Mary-Jane O'Neil, Jr.", "Mary-Jane O'Neil, Jr."),
    ],
)
def test_escape_cell_marks_each_place_a_formula_could_start(value, expected):
    assert escape_cell(value) == expected
    assert unescape_cell(expected) == value
