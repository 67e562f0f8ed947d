"""Importing a tags column: tags are added (never removed), matched in any case, created."""

import csv
import io

import pytest
from django.core.management import call_command

from events.models import Event, Registration
from members.import_jobs import import_job_confirm, import_job_create, import_job_run
from members.importing import describe_columns, import_apply, import_preview, inspect_file
from members.models import ImportJob, Member, Tag

pytestmark = pytest.mark.django_db

MEMBERS = ImportJob.Pool.MEMBERS


def tag_names(contact) -> set[str]:
    return set(contact.tags.values_list("name", flat=True))


@pytest.mark.parametrize("header", ["tags", "Tag", "GROUPS", "labels"])
def test_the_tags_column_is_recognised_under_each_name(csv_file, header):
    path = csv_file(f"phone,{header}\n2015550123,volunteers\n")

    fmt = inspect_file(path=path)

    assert describe_columns(fmt=fmt, pool=MEMBERS) == {
        "used": {"phone": "phone", "tags": header},
        "ignored": [],
    }


def test_new_tags_are_created_and_existing_ones_matched_in_any_case(csv_file):
    volunteers = Tag.objects.create(name="volunteers")
    path = csv_file(
        'phone,tags\n2015550123,"Volunteers; North  side"\n2015550124,"north side, , DRIVERS;"\n'
    )

    summary = import_apply(path=path, pool=MEMBERS)

    assert summary.new == 2
    assert summary.new_tags == ["North side", "DRIVERS"]
    assert sorted(Tag.objects.values_list("name", flat=True)) == [
        "DRIVERS",
        "North side",
        "volunteers",
    ]
    ann = Member.objects.get(phone="+12015550123")
    assert set(ann.tags.all()) == {volunteers, Tag.objects.get(name="North side")}
    assert tag_names(Member.objects.get(phone="+12015550124")) == {"North side", "DRIVERS"}


def test_tags_are_added_to_the_existing_ones_never_removed(csv_file):
    ann = Member.objects.create(first_name="Ann", phone="+12015550123")
    ann.tags.add(Tag.objects.create(name="board"))
    path = csv_file("first name,phone,groups\nAnn,2015550123,volunteers\n")

    summary = import_apply(path=path, pool=MEMBERS)

    assert (summary.new, summary.updated, summary.unchanged) == (0, 1, 0)
    assert tag_names(ann) == {"board", "volunteers"}


def test_a_contact_already_carrying_the_tags_is_unchanged(csv_file):
    ann = Member.objects.create(first_name="Ann", phone="+12015550123")
    ann.tags.add(Tag.objects.create(name="Volunteers"))
    path = csv_file("first name,phone,tags\nAnn,2015550123,volunteers\n")

    assert import_preview(path=path, pool=MEMBERS).unchanged == 1
    summary = import_apply(path=path, pool=MEMBERS)

    assert (summary.updated, summary.unchanged) == (0, 1)
    assert Member.tags.through.objects.count() == 1


def test_a_blank_tags_cell_changes_nothing(csv_file):
    ann = Member.objects.create(first_name="Ann", phone="+12015550123")
    ann.tags.add(Tag.objects.create(name="board"))
    path = csv_file("first name,phone,tags\nAnn,2015550123,\n")

    summary = import_apply(path=path, pool=MEMBERS)

    assert summary.unchanged == 1
    assert tag_names(ann) == {"board"}


def test_preview_counts_tag_only_changes_as_updated_and_writes_nothing(csv_file):
    Member.objects.create(first_name="Ann", phone="+12015550123")
    Member.objects.create(first_name="Bo", phone="+12015550124")
    path = csv_file("first name,phone,tags\nAnn,2015550123,volunteers\nBo,2015550124,\n")

    summary = import_preview(path=path, pool=MEMBERS)

    assert (summary.new, summary.updated, summary.unchanged) == (0, 1, 1)
    assert summary.new_tags == ["volunteers"]
    assert not Tag.objects.exists()
    assert not Member.tags.through.objects.exists()


def test_an_over_long_tag_makes_the_row_a_problem_with_its_reason(csv_file):
    long_tag = "x" * 51
    path = csv_file(f'phone,tags\n2015550123,ok\n2015550124,"fine; {long_tag}"\n')
    report = io.StringIO()

    summary = import_apply(path=path, pool=MEMBERS, report=report)

    assert (summary.new, summary.invalid) == (1, 1)
    assert summary.problems[0].line == 3
    assert summary.problems[0].reason == (
        "The tag 'xxxxxxxxxxxxxxxxxxxx…' is longer than 50 characters."
    )
    assert not Member.objects.filter(phone="+12015550124").exists()
    assert sorted(Tag.objects.values_list("name", flat=True)) == ["ok"]
    rows = list(csv.reader(io.StringIO(report.getvalue())))
    assert rows[1][:2] == ["3", "invalid"]


def test_a_tag_of_exactly_50_characters_is_fine(csv_file):
    path = csv_file(f"phone,tags\n2015550123,{'y' * 50}\n")

    assert import_apply(path=path, pool=MEMBERS).new == 1
    assert Tag.objects.get().name == "y" * 50


def test_a_file_without_a_tags_column_behaves_as_before(csv_file):
    ann = Member.objects.create(first_name="Ann", phone="+12015550123")
    ann.tags.add(Tag.objects.create(name="board"))
    path = csv_file("first name,phone\nAnn,2015550123\nBo,2015550124\n")

    summary = import_apply(path=path, pool=MEMBERS)

    assert (summary.new, summary.updated, summary.unchanged) == (1, 0, 1)
    assert summary.new_tags == []
    assert tag_names(ann) == {"board"}
    assert Tag.objects.count() == 1
    assert Member.tags.through.objects.count() == 1


def test_registrations_get_tags_too(csv_file):
    event = Event.objects.create(name="Picnic", starts_at="2026-07-04T12:00:00Z")
    existing = Registration.objects.create(event=event, phone="+12015550123", first_name="Ann")
    path = csv_file("first name,phone,labels\nAnn,2015550123,drivers\nBo,2015550124,drivers\n")

    summary = import_apply(path=path, pool=ImportJob.Pool.REGISTRATIONS, event_id=event.pk)

    assert (summary.new, summary.updated) == (1, 1)
    assert Tag.objects.get().registrations.count() == 2
    assert tag_names(existing) == {"drivers"}


def test_many_rows_with_tags_span_batches(csv_file):
    rows = "".join(f'2015{i:06d},"t{i % 3}; all"\n' for i in range(2500))
    path = csv_file("phone,tags\n" + rows)

    summary = import_apply(path=path, pool=MEMBERS)

    assert summary.new == 2500
    assert Tag.objects.count() == 4
    assert Tag.objects.get(name="all").members.count() == 2500
    again = import_apply(path=path, pool=MEMBERS)
    assert (again.unchanged, Member.tags.through.objects.count()) == (2500, 5000)


def make_job(path, user=None) -> ImportJob:
    with path.open("rb") as f:
        job = import_job_create(upload=f, file_name="list.csv", pool=MEMBERS, event=None, user=user)
    import_job_run(job_id=job.pk)
    job.refresh_from_db()
    return job


def test_admin_preview_names_the_tags_column_and_the_new_tags(csv_file, manager_client):
    Member.objects.create(first_name="Ann", phone="+12015550123")
    path = csv_file("first name,phone,Groups\nAnn,2015550123,volunteers\nBo,2015550124,Board\n")

    job = make_job(path)
    page = manager_client.get(f"/admin/members/importjob/{job.pk}/change/").content.decode()

    assert (job.new_count, job.updated_count, job.unchanged_count) == (1, 1, 0)
    assert job.columns["used"]["tags"] == "Groups"
    assert "tags &larr; &ldquo;Groups&rdquo;" in page
    assert "New tags this file will create" in page and "&ldquo;Board&rdquo;" in page


def test_a_tag_given_between_preview_and_confirm_makes_a_new_preview(csv_file):
    ann = Member.objects.create(first_name="Ann", phone="+12015550123")
    Member.objects.create(first_name="Bo", phone="+12015550124")
    path = csv_file("first name,phone,tags\nAnn,2015550123,volunteers\nBo,2015550124,volunteers\n")
    job = make_job(path)
    assert job.updated_count == 2

    # Someone tags Ann by hand meanwhile: the import would now update one contact, not two.
    ann.tags.add(Tag.objects.create(name="Volunteers"))
    import_job_confirm(job_id=job.pk)
    import_job_run(job_id=job.pk)
    job.refresh_from_db()

    assert job.status == ImportJob.Status.PREVIEWED
    assert "Nothing was imported" in job.status_message
    assert (job.updated_count, job.unchanged_count) == (1, 1)
    assert not Tag.objects.get().members.filter(phone="+12015550124").exists()

    import_job_confirm(job_id=job.pk)
    import_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.APPLIED
    assert Tag.objects.get().members.count() == 2


def test_upload_page_explains_the_tags_column(manager_client):
    page = manager_client.get("/admin/members/member/import/").content.decode()

    assert "groups" in page and "separated by <code>;</code> or" in page


def test_command_line_reports_new_tags(csv_file):
    path = csv_file("phone,tags\n2015550123,volunteers\n")
    out = io.StringIO()

    call_command("import_members", str(path), "--dry-run", stdout=out)

    assert "Would create 1 new tag: 'volunteers'." in out.getvalue()
    assert "tags <- 'tags'" in out.getvalue()
    assert not Tag.objects.exists()
