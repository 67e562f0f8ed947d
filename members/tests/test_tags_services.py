"""Tag services: one tag whatever its case, no duplicate links, honest counts."""

import pytest
from django.db import connection

from events.models import Event, Registration
from members.models import Member, Tag
from members.services import (
    TagNameError,
    tag_add,
    tag_get_or_create,
    tag_remove,
    tags_get_or_create,
)
from messaging.tests.conftest import run_threads

pytestmark = pytest.mark.django_db


def members(n: int, start: int = 0) -> list[Member]:
    return Member.objects.bulk_create(
        Member(first_name=f"M{i}", phone=f"+1201555{i:04d}") for i in range(start, start + n)
    )


def test_a_name_in_another_case_reuses_the_tag():
    volunteers = Tag.objects.create(name="volunteers")

    tag, created = tag_get_or_create(name="  Volunteers ")

    assert (tag, created) == (volunteers, False)
    assert Tag.objects.count() == 1


def test_a_new_name_is_created_trimmed_with_single_spaces():
    tag, created = tag_get_or_create(name="  North   side ")

    assert created
    assert tag.name == "North side"


@pytest.mark.parametrize(("name", "reason"), [("   ", "Type a tag name"), ("x" * 51, "at most 50")])
def test_unusable_names_are_refused_and_nothing_is_created(name, reason):
    with pytest.raises(TagNameError, match=reason):
        tag_get_or_create(name=name)

    assert Tag.objects.count() == 0


def test_tag_add_counts_new_and_already_tagged_and_never_duplicates():
    people = members(5)
    tag = Tag.objects.create(name="volunteers")
    for member in people[:2]:
        member.tags.add(tag)

    result = tag_add(contacts=Member.objects.all(), name="VOLUNTEERS")

    assert (result.tag, result.changed, result.unchanged, result.created) == (tag, 3, 2, False)
    assert tag.members.count() == 5
    assert Member.tags.through.objects.count() == 5
    again = tag_add(contacts=Member.objects.all(), name="volunteers")
    assert (again.changed, again.unchanged) == (0, 5)
    assert Member.tags.through.objects.count() == 5


def test_tag_add_touches_only_the_contacts_given_and_keeps_their_other_tags():
    people = members(4)
    north = Tag.objects.create(name="north side")
    people[0].tags.add(north)

    result = tag_add(
        contacts=Member.objects.filter(pk__in=[people[0].pk, people[1].pk]), name="new"
    )

    assert result.created and result.changed == 2
    assert set(people[0].tags.values_list("name", flat=True)) == {"north side", "new"}
    assert not people[2].tags.exists()


def test_tag_add_and_remove_on_many_contacts_span_several_chunks():
    members(2500)

    added = tag_add(contacts=Member.objects.all(), name="everyone")
    removed = tag_remove(contacts=Member.objects.filter(first_name__startswith="M1"), tag=added.tag)

    assert added.changed == 2500
    expected = Member.objects.filter(first_name__startswith="M1").count()
    assert (removed.changed, removed.unchanged) == (expected, 0)
    assert added.tag.members.count() == 2500 - expected


def test_tag_remove_counts_those_without_it_and_keeps_the_tag():
    people = members(3)
    tag = Tag.objects.create(name="volunteers")
    people[0].tags.add(tag)

    result = tag_remove(contacts=Member.objects.all(), tag=tag)

    assert (result.changed, result.unchanged) == (1, 2)
    assert Tag.objects.filter(pk=tag.pk).exists()
    assert not tag.members.exists()


def test_registrations_are_tagged_by_the_same_services():
    event = Event.objects.create(name="Picnic", starts_at="2026-07-04T12:00:00Z")
    Registration.objects.create(event=event, phone="+12015550123")
    Registration.objects.create(event=event, phone="+12015550124")

    result = tag_add(contacts=Registration.objects.all(), name="Drivers")

    assert result.changed == 2
    assert result.tag.registrations.count() == 2
    assert not result.tag.members.exists()


def test_get_or_create_many_names_matches_each_in_any_case():
    Tag.objects.create(name="Volunteers")

    tags, created = tags_get_or_create(names=["volunteers", "North side", "north SIDE"])

    assert created == ["North side"]
    assert sorted(t.name for t in tags.values()) == ["North side", "Volunteers"]
    assert Tag.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_staff_tagging_at_once_write_each_link_once_and_count_it_once():
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers are a PostgreSQL matter; SQLite writes one at a time")
    members(3000)
    spellings = ["volunteers", "Volunteers"]

    results = run_threads(lambda i: tag_add(contacts=Member.objects.all(), name=spellings[i]), n=2)

    assert Tag.objects.count() == 1
    tag = Tag.objects.get()
    assert Member.tags.through.objects.filter(tag=tag).count() == 3000
    assert sum(r.changed for r in results) == 3000
    assert [r.changed + r.unchanged for r in results] == [3000, 3000]
    assert sum(r.created for r in results) <= 1


@pytest.mark.django_db(transaction=True)
def test_creating_one_tag_in_two_cases_at_once_makes_one_tag():
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers are a PostgreSQL matter; SQLite writes one at a time")

    results = run_threads(lambda i: tag_get_or_create(name=["north side", "North Side"][i]), n=2)

    assert Tag.objects.count() == 1
    assert results[0][0] == results[1][0]
