"""The importer itself: reading messy files, classifying rows, writing them."""

import csv
import io

import pytest
from django.test import override_settings

from events.models import Event, Registration
from members.importing import (
    ImportFileError,
    import_apply,
    import_preview,
    inspect_file,
    split_name,
)
from members.models import ImportJob, Member
from suppression.models import SuppressedContact, UnsubscribedContact

pytestmark = pytest.mark.django_db

MEMBERS = ImportJob.Pool.MEMBERS


def preview(path, **kwargs):
    return import_preview(path=path, pool=MEMBERS, **kwargs)


def apply(path, **kwargs):
    return import_apply(path=path, pool=MEMBERS, **kwargs)


# --- Encodings, line endings, delimiters ----------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "prefix", "expected"),
    [
        ("utf-8", b"", "utf-8"),
        ("utf-8", b"\xef\xbb\xbf", "utf-8-sig"),
        ("cp1252", b"", "cp1252"),
        ("utf-16", b"", "utf-16"),
    ],
)
def test_each_encoding_reads_accents(csv_file, encoding, prefix, expected):
    text = "first name,last name,phone\r\nJosé,Núñez,(201) 555-0123\r\nZoë,Brontë,2015550124\r\n"
    path = csv_file(prefix + text.encode(encoding))

    assert inspect_file(path=path).encoding == expected
    summary = apply(path)

    assert summary.new == 2
    jose = Member.objects.get(phone="+12015550123")
    assert (jose.first_name, jose.last_name) == ("José", "Núñez")
    assert Member.objects.get(phone="+12015550124").last_name == "Brontë"


def test_windows_1252_with_smart_quotes_and_euro(csv_file):
    path = csv_file("name,phone\n\u201cBig\u201d Al \u20ac,2015550123\n", encoding="cp1252")

    apply(path)

    assert Member.objects.get().first_name == "\u201cBig\u201d"


def test_utf8_accent_only_on_the_last_line_still_reads_as_utf8(csv_file):
    rows = "".join(f"A{i},20155501{i:02d}\n" for i in range(10, 60))
    path = csv_file(f"name,phone\n{rows}Renée,2015550199\n")

    assert inspect_file(path=path).encoding == "utf-8"
    apply(path)
    assert Member.objects.get(phone="+12015550199").first_name == "Renée"


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_delimiters_and_line_endings(csv_file, delimiter, newline):
    lines = [
        ["First", "Last", "Phone"],
        ["Ann", "Lee, Jr.", "201 555 0123"],
        ["Bo", "Ng", "201-555-0124"],
    ]
    text = newline.join(
        delimiter.join(f'"{c}"' if delimiter in c else c for c in row) for row in lines
    )
    path = csv_file(text + newline)

    fmt = inspect_file(path=path)
    summary = apply(path, fmt=fmt)

    assert fmt.delimiter == delimiter
    assert summary.new == 2
    assert Member.objects.get(phone="+12015550123").last_name == "Lee, Jr."


def test_semicolon_file_whose_names_hold_commas(csv_file):
    # The header decides: data commas must not turn the file into a comma file.
    path = csv_file("Name;Phone\nDoe, Jane;2015550123\nRoe, Rick;2015550124\n")

    apply(path)

    assert Member.objects.get(phone="+12015550123").first_name == "Jane"


def test_blank_lines_anywhere_are_skipped_and_counted(csv_file):
    path = csv_file("\n\nphone,first\n\n2015550123,Ann\n,\n  \n2015550124,Bo\n\n")

    summary = apply(path)

    assert (summary.rows, summary.new, summary.blank, summary.invalid) == (2, 2, 4, 0)


def test_quoted_cell_with_a_line_break_keeps_line_numbers_right(csv_file):
    path = csv_file('phone,first,notes\n2015550123,Ann,"two\nlines"\nnope,Bo,x\n')

    summary = preview(path)

    assert summary.problems[0].line == 4


# --- Columns --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    ["phone", "Mobile", "CELL", "Phone Number", "tel", "Telephone", "mobile_number", "Cell Phone"],
)
def test_every_phone_alias(csv_file, header):
    path = csv_file(f"{header}\n2015550123\n")

    assert apply(path).new == 1


@pytest.mark.parametrize("header", ["First Name", "first", "Given Name", "first_name", "FirstName"])
def test_every_first_name_alias(csv_file, header):
    apply(csv_file(f"{header},phone\nAnn,2015550123\n"))

    assert Member.objects.get().first_name == "Ann"


@pytest.mark.parametrize("header", ["Last Name", "surname", "LAST_NAME", "Family name"])
def test_every_last_name_alias(csv_file, header):
    apply(csv_file(f"{header},phone\nLee,2015550123\n"))

    assert Member.objects.get().last_name == "Lee"


@pytest.mark.parametrize("header", ["email", "E-mail", "Email Address"])
def test_every_email_alias(csv_file, header):
    apply(csv_file(f"{header},phone\nann@example.org,2015550123\n"))

    assert Member.objects.get().email == "ann@example.org"


@pytest.mark.parametrize(
    ("full", "first", "last"),
    [
        ("Jane Doe", "Jane", "Doe"),
        ("Doe, Jane", "Jane", "Doe"),
        ("Juan de la Cruz", "Juan", "de la Cruz"),
        ("  Cher  ", "Cher", ""),
        ("", "", ""),
    ],
)
def test_a_single_name_column_is_split(full, first, last):
    assert split_name(full) == (first, last)


def test_name_column_fills_first_and_last(csv_file):
    apply(csv_file('Full Name,Phone\n"Doe, Jane",2015550123\nJuan de la Cruz,2015550124\n'))

    assert Member.objects.get(phone="+12015550123").full_name == "Jane Doe"
    assert Member.objects.get(phone="+12015550124").last_name == "de la Cruz"


def test_own_first_and_last_columns_win_over_name(csv_file):
    apply(csv_file("name,first name,last name,phone\nJ. Doe,Jane,Doe,2015550123\n"))

    assert Member.objects.get().full_name == "Jane Doe"


def test_unknown_columns_are_ignored_and_named(csv_file):
    fmt = inspect_file(path=csv_file("phone,Shoe size,notes\n2015550123,9,x\n"))

    assert fmt.ignored == ["Shoe size", "notes"]


def test_first_of_two_phone_columns_wins(csv_file):
    apply(csv_file("Mobile,Home phone,Phone\n2015550123,,2015550199\n"))

    assert Member.objects.get().phone == "+12015550123"


# --- Phones, duplicates and the database ----------------------------------------------


def test_invalid_and_non_us_numbers(csv_file):
    path = csv_file(
        "phone,first\n"
        "+44 20 7946 0958,Brit\n"  # valid with its country code
        "0044 20 7946 0958,Brit again\n"  # the same number, 00 prefix: a duplicate
        "020 7946 0958,No country code\n"  # a UK number read as US: invalid
        "555-0100,No area code\n"
        "12345,Short\n"
        ",Empty\n"
        "(200) 555-0123,Bad area\n"
        "+999 123 4567,Bad country\n"
    )

    summary = apply(path)

    assert (summary.new, summary.duplicate, summary.invalid) == (1, 1, 6)
    assert list(Member.objects.values_list("phone", flat=True)) == ["+442079460958"]
    reasons = {p.line: p.reason for p in summary.problems}
    assert "Same phone as line 2" in reasons[3]
    assert "too long" in reasons[4]
    assert "not a valid number" in reasons[8]
    assert "missing its area code" in reasons[5]
    assert "too short" in reasons[6]
    assert "No phone number" in reasons[7]
    assert "country code" in reasons[9]


def test_region_setting_reads_national_numbers(csv_file):
    with override_settings(SMS_DEFAULT_REGION="GB"):
        apply(csv_file("phone\n020 7946 0958\n"))

    assert Member.objects.get().phone == "+442079460958"


def test_duplicates_in_file_collapse_to_the_first_row(csv_file):
    path = csv_file(
        "first,phone\nAnn,(201) 555-0123\nAnnie,+1 201 555 0123\nAnn,201.555.0123\nBo,2015550124\n"
    )

    summary = apply(path)

    assert (summary.new, summary.duplicate) == (2, 2)
    assert Member.objects.get(phone="+12015550123").first_name == "Ann"


def test_existing_members_are_matched_by_phone_and_updated_never_duplicated(csv_file):
    Member.objects.create(first_name="Ann", last_name="Lee", phone="+12015550123", email="a@x.org")
    Member.objects.create(first_name="Bo", last_name="Ng", phone="+12015550124")
    path = csv_file(
        "first,last,phone,email\n"
        "Ann,Lee,(201) 555-0123,a@x.org\n"  # same details
        "Bob,Ng,201-555-0124,\n"  # new first name
        "Cy,Oh,201-555-0125,\n"
    )

    summary = apply(path)

    assert (summary.new, summary.updated, summary.unchanged) == (1, 1, 1)
    assert Member.objects.count() == 3
    assert Member.objects.get(phone="+12015550124").first_name == "Bob"


def test_blank_cells_never_erase_what_is_there(csv_file):
    Member.objects.create(first_name="Ann", last_name="Lee", phone="+12015550123", email="a@x.org")

    summary = apply(csv_file("first,last,phone,email\n,,2015550123,\n"))

    assert summary.unchanged == 1
    ann = Member.objects.get()
    assert (ann.first_name, ann.last_name, ann.email) == ("Ann", "Lee", "a@x.org")


def test_update_touches_updated_at_and_leaves_other_fields(csv_file):
    member = Member.objects.create(
        first_name="Ann", phone="+12015550123", is_active=False, notes="n"
    )
    before = member.updated_at

    apply(csv_file("first,phone\nAnnie,2015550123\n"))

    member.refresh_from_db()
    assert member.first_name == "Annie"
    assert (member.is_active, member.notes) == (False, "n")
    assert member.updated_at > before


def test_invalid_email_and_overlong_name_make_the_row_invalid(csv_file):
    long_name = "x" * 101
    summary = apply(
        csv_file(f"first,phone,email\nAnn,2015550123,not-an-email\n{long_name},2015550124,\n")
    )

    assert (summary.invalid, summary.new) == (2, 0)
    assert "not an email address" in summary.problems[0].reason
    assert "longer than 100" in summary.problems[1].reason


def test_unsubscribed_and_suppressed_are_counted_but_imported(csv_file):
    UnsubscribedContact.objects.create(phone="+12015550123")
    SuppressedContact.objects.create(phone="+12015550124")
    SuppressedContact.objects.create(phone="+12015550125", lifted=True)

    summary = apply(csv_file("phone\n2015550123\n2015550124\n2015550125\n2015550126\n"))

    assert (summary.unsubscribed, summary.suppressed, summary.new) == (1, 1, 4)
    assert Member.objects.count() == 4


def test_only_the_first_50_problems_are_kept_in_memory_the_report_has_all(csv_file):
    path = csv_file("phone\n" + "bad\n" * 120)
    report = io.StringIO()

    summary = preview(path, report=report)

    assert summary.invalid == 120
    assert len(summary.problems) == 50
    assert len(report.getvalue().splitlines()) == 121


def test_problem_report_keeps_original_columns_and_escapes_formulas(csv_file):
    path = csv_file("first,phone\n=HYPERLINK(1),bad\n")
    report = io.StringIO()

    preview(path, report=report)

    header, row = csv.reader(io.StringIO(report.getvalue()))
    assert header == ["line", "problem", "reason", "first", "phone"]
    assert row[:2] == ["2", "invalid"]
    assert row[3:] == ["'=HYPERLINK(1)", "bad"]


def test_a_cell_escaped_by_our_export_imports_back_unescaped(csv_file):
    apply(csv_file("first,phone\n'=Ann,'+1 201 555 0123\n"))

    assert Member.objects.get().first_name == "=Ann"


# --- Preview writes nothing, apply does exactly the preview ---------------------------


def test_preview_writes_nothing(csv_file):
    Member.objects.create(first_name="Ann", phone="+12015550123")
    path = csv_file("first,phone\nAnnie,2015550123\nBo,2015550124\n")

    summary = preview(path)

    assert (summary.new, summary.updated) == (1, 1)
    assert Member.objects.count() == 1
    assert Member.objects.get().first_name == "Ann"


def test_apply_does_what_preview_showed(csv_file):
    Member.objects.create(first_name="Ann", phone="+12015550123")
    Member.objects.create(first_name="Cy", phone="+12015550125")
    path = csv_file(
        "first,phone\nAnnie,2015550123\nBo,2015550124\nCy,2015550125\nbad,1\nBo,2015550124\n"
    )

    planned = preview(path)
    done = apply(path)

    assert done.counts() == planned.counts()
    assert done.plan_digest == planned.plan_digest
    again = preview(path)
    assert (again.new, again.updated, again.unchanged) == (0, 0, 3)


def test_plan_digest_changes_when_the_database_does(csv_file):
    path = csv_file("phone\n2015550123\n2015550124\n")
    before = preview(path)

    Member.objects.create(phone="+12015550123")

    assert preview(path).plan_digest != before.plan_digest


def test_large_file_is_written_in_batches(csv_file, monkeypatch):
    monkeypatch.setattr("members.importing.BATCH_SIZE", 100)
    rows = "".join(f"{2015550000 + i}\n" for i in range(1000, 1350))
    path = csv_file("phone\n" + rows)
    progress = []

    summary = apply(path, on_progress=progress.append)

    assert summary.new == 350
    assert Member.objects.count() == 350
    assert progress == [101, 201, 301, 351]


# --- Registrations: the same importer, scoped to one event ----------------------------


def test_registrations_are_matched_within_their_event(csv_file, event):
    other = Event.objects.create(name="Gala", starts_at="2026-08-01T18:00:00Z")
    Registration.objects.create(event=other, phone="+12015550123", first_name="Ann")
    Registration.objects.create(event=event, phone="+12015550124", first_name="Bo")
    path = csv_file("Given name,Surname,Cell,Email\nAnn,Lee,2015550123,a@x.org\nBob,,2015550124,\n")

    summary = import_apply(path=path, pool=ImportJob.Pool.REGISTRATIONS, event_id=event.pk)

    assert (summary.new, summary.updated) == (1, 1)
    assert Registration.objects.filter(event=event).count() == 2
    assert Registration.objects.filter(phone="+12015550123").count() == 2
    assert Member.objects.count() == 0


def test_registrations_ignore_the_email_column(csv_file, event):
    path = csv_file("phone,email\n2015550123,not-an-email\n")

    summary = import_apply(path=path, pool=ImportJob.Pool.REGISTRATIONS, event_id=event.pk)

    assert (summary.new, summary.invalid) == (1, 0)


# --- Files that cannot be imported at all ---------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty"),
        (b"\n\n  \n", "only blank lines"),
        (b"first,last\nAnn,Lee\n", "No phone column"),
        (b"2015550123\n2015550124\n", "No phone column"),
        (b"phone,first\n\n\n", "no contacts"),
        (b"phone\x00\x01\x02binary\n", "not a text file"),
        (b"PK\x03\x04\x14\x00\x06\x00", "Excel workbook"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "Excel workbook"),
        (b"%PDF-1.7\n", "PDF"),
        (b"phone,name\n2015550123,\x81\x8d\x8f\xe9\n", "not UTF-8 or Windows-1252"),
        (b"\xff\xfep\x00h\x00o\x00n\x00e\x00\n\x00\x00\xd8\n\x00", "not valid UTF-16"),
        (
            b'phone,name\n2015550123,"Ann\n' + b"2015550124,Bo\n" * 30,
            'quote (") opened on this line',
        ),
    ],
)
def test_bad_files_are_refused_with_a_clear_message(csv_file, content, message):
    path = csv_file(content)

    with pytest.raises(ImportFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        apply(path)

    assert Member.objects.count() == 0


def test_a_broken_quote_on_the_last_line_writes_nothing(csv_file, monkeypatch):
    monkeypatch.setattr("members.importing.BATCH_SIZE", 10)
    rows = "".join(f"{2015551000 + i}\n" for i in range(50))
    path = csv_file("phone\n" + rows + '"2015559999\n' + "x\n" * 25)

    with pytest.raises(ImportFileError):
        apply(path)

    assert Member.objects.count() == 0


def test_file_over_import_max_bytes_is_refused(csv_file, settings):
    settings.IMPORT_MAX_BYTES = 100
    path = csv_file("phone\n" + "2015550123\n" * 20)

    with pytest.raises(ImportFileError, match="IMPORT_MAX_BYTES"):
        apply(path)

    assert Member.objects.count() == 0


def test_missing_file_is_an_import_error(tmp_path):
    with pytest.raises(ImportFileError, match="Cannot read"):
        inspect_file(path=tmp_path / "nope.csv")
