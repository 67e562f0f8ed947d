"""The members and registrations exports carry a tags column, read without a query per row."""

import csv
import io

import pytest
from django.test import Client

from events.models import Event, Registration
from members.importing import import_apply
from members.models import ImportJob, Member, Tag

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(manager_user) -> Client:
    client = Client()
    client.force_login(manager_user)
    return client


def export(client: Client, url: str, ids: list[int]) -> list[dict[str, str]]:
    response = client.post(url, {"action": "export_csv", "_selected_action": [str(i) for i in ids]})
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode("utf-8")
    return list(csv.DictReader(io.StringIO(body.lstrip("\ufeff"))))


def test_member_export_joins_tag_names_in_order(staff, django_assert_max_num_queries):
    members = Member.objects.bulk_create(
        Member(first_name=f"M{i}", phone=f"+1201555{i:04d}") for i in range(2500)
    )
    north, vol = Tag.objects.create(name="north side"), Tag.objects.create(name="volunteers")
    members[0].tags.add(vol, north)
    members[2400].tags.add(Tag.objects.create(name="=cmd"))

    # Three chunks of rows, each with one query for its tags.
    with django_assert_max_num_queries(20):
        rows = export(staff, "/admin/members/member/", [m.pk for m in members])

    by_name = {row["first name"]: row["tags"] for row in rows}
    assert len(rows) == 2500
    assert by_name["M0"] == "north side; volunteers"
    assert by_name["M1"] == ""
    assert by_name["M2400"] == "'=cmd"


def test_registration_export_has_tags(staff):
    event = Event.objects.create(name="Picnic", starts_at="2026-07-04T12:00:00Z")
    reg = Registration.objects.create(event=event, first_name="Ann", phone="+12015550123")
    reg.tags.add(Tag.objects.create(name="drivers"))

    (row,) = export(staff, "/admin/events/registration/", [reg.pk])

    assert (row["first name"], row["event"], row["tags"]) == ("Ann", "Picnic", "drivers")


def test_an_exported_file_imports_its_tags_back(staff, tmp_path):
    ann = Member.objects.create(first_name="Ann", phone="+12015550123")
    ann.tags.add(Tag.objects.create(name="-north"), Tag.objects.create(name="volunteers"))
    rows = export(staff, "/admin/members/member/", [ann.pk])
    path = tmp_path / "export.csv"
    with path.open("w", newline="", encoding="utf-8-sig") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    Member.objects.all().delete()

    import_apply(path=path, pool=ImportJob.Pool.MEMBERS)

    back = Member.objects.get()
    assert sorted(back.tags.values_list("name", flat=True)) == ["-north", "volunteers"]
    assert Tag.objects.count() == 2
