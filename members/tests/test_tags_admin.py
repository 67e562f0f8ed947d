"""Tags in the admin: the tag list, the member list's column and filter, the bulk actions."""

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from events.models import Event, Registration
from members.models import Member, Tag

pytestmark = pytest.mark.django_db

MEMBERS_URL = "/admin/members/member/"


@pytest.fixture
def staff(manager_user) -> Client:
    """A Social manager signed in (the root conftest's manager_user)."""
    client = Client()
    client.force_login(manager_user)
    return client


def add_members(n: int) -> list[Member]:
    return Member.objects.bulk_create(
        Member(first_name=f"F{i}", last_name=f"L{i:04d}", phone=f"+1201555{i:04d}")
        for i in range(n)
    )


def act(client: Client, action: str, members: list[Member], url: str = MEMBERS_URL, **form):
    data = {"action": action, "_selected_action": [str(m.pk) for m in members]}
    if form:
        data.update(form, apply="yes")
    else:
        data["index"] = "0"
    return client.post(url, data, follow=bool(form))


def test_tag_list_counts_members_and_registrations(staff):
    people = add_members(3)
    event = Event.objects.create(name="Picnic", starts_at="2026-07-04T12:00:00Z")
    registration = Registration.objects.create(event=event, phone="+12015550999")
    volunteers = Tag.objects.create(name="volunteers")
    Tag.objects.create(name="unused")
    for member in people[:2]:
        member.tags.add(volunteers)
    registration.tags.add(volunteers)

    response = staff.get("/admin/members/tag/")

    rows = {tag.name: tag for tag in response.context["cl"].result_list}
    assert (rows["volunteers"]._members, rows["volunteers"]._registrations) == (2, 1)
    assert (rows["unused"]._members, rows["unused"]._registrations) == (0, 0)
    assert f"?tags__id__exact={volunteers.pk}" in response.content.decode()
    assert [t.name for t in staff.get("/admin/members/tag/?q=volun").context["cl"].result_list] == [
        "volunteers"
    ]


def test_a_tag_in_another_case_is_refused_in_plain_words(staff):
    Tag.objects.create(name="volunteers")

    response = staff.post("/admin/members/tag/add/", {"name": "Volunteers"})

    assert response.status_code == 200
    page = response.content.decode()
    assert "There is already a tag &#x27;volunteers&#x27;" in page
    assert "tag_unique_name_any_case" not in page
    assert Tag.objects.count() == 1


def test_member_list_shows_tags_and_filters_by_tag(staff):
    ann, bo = add_members(2)
    volunteers = Tag.objects.create(name="volunteers")
    north = Tag.objects.create(name="north side")
    ann.tags.add(volunteers, north)

    page = staff.get(MEMBERS_URL).content.decode()
    filtered = staff.get(f"{MEMBERS_URL}?tags__id__exact={volunteers.pk}")

    assert "north side, volunteers" in page
    assert list(filtered.context["cl"].result_list) == [ann]


def test_tags_are_edited_on_the_member_form(staff):
    (member,) = add_members(1)
    volunteers = Tag.objects.create(name="volunteers")
    form = staff.get(f"{MEMBERS_URL}{member.pk}/change/").context["adminform"].form.initial

    response = staff.post(
        f"{MEMBERS_URL}{member.pk}/change/",
        {
            **{k: v for k, v in form.items() if v is not None and k != "tags"},
            "tags": [volunteers.pk],
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert list(member.tags.all()) == [volunteers]


def test_member_changelist_queries_stay_bounded_with_tags(staff, django_assert_max_num_queries):
    people = add_members(300)
    tags = [Tag.objects.create(name=f"tag {n}") for n in range(5)]
    through = Member.tags.through
    through.objects.bulk_create(
        through(member_id=m.pk, tag_id=tags[i % 5].pk) for i, m in enumerate(people)
    )
    through.objects.bulk_create(
        through(member_id=m.pk, tag_id=tags[(i + 1) % 5].pk) for i, m in enumerate(people)
    )
    staff.get(MEMBERS_URL)  # warm per-process caches

    with django_assert_max_num_queries(15):
        response = staff.get(MEMBERS_URL)

    assert len(response.context["cl"].result_list) == 100
    assert response.content.decode().count("tag 1") >= 40


def test_add_action_asks_which_tag_first_and_changes_nothing_yet(staff):
    people = add_members(3)
    Tag.objects.create(name="volunteers")

    response = act(staff, "tag_add_action", people)

    assert response.status_code == 200
    page = response.content.decode()
    assert "Add a tag to 3 members" in page
    assert 'name="new_name"' in page and ">volunteers</option>" in page
    assert page.count('name="_selected_action"') == 3
    assert not Member.tags.through.objects.exists()


def test_add_action_with_a_new_name_in_another_case_reuses_the_tag(staff):
    people = add_members(15)
    volunteers = Tag.objects.create(name="volunteers")
    for member in people[:3]:
        member.tags.add(volunteers)

    response = act(staff, "tag_add_action", people, new_name="Volunteers")

    assert response.redirect_chain[-1][0].startswith(MEMBERS_URL)
    assert (
        "Tagged 12 members &#x27;volunteers&#x27; (3 already had it)." in response.content.decode()
    )
    assert Tag.objects.count() == 1
    assert volunteers.members.count() == 15


def test_add_action_with_an_existing_tag_chosen(staff):
    people = add_members(2)
    north = Tag.objects.create(name="north side")

    response = act(staff, "tag_add_action", people[:1], tag=str(north.pk))

    assert "Tagged 1 member &#x27;north side&#x27;." in response.content.decode()
    assert list(north.members.all()) == [people[0]]


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"new_name": "x" * 51}, "A tag is at most 50 characters"),
        ({"new_name": "   "}, "Choose a tag, or type the name of a new one."),
        ({}, "Choose a tag, or type the name of a new one."),
        ({"new_name": "both", "tag": "TAG"}, "Choose an existing tag or type a name, not both."),
    ],
)
def test_add_action_errors_are_shown_by_the_field_and_change_nothing(staff, form, error):
    people = add_members(2)
    existing = Tag.objects.create(name="volunteers")
    form = {k: str(existing.pk) if v == "TAG" else v for k, v in form.items()}

    response = staff.post(
        MEMBERS_URL,
        {
            "action": "tag_add_action",
            "_selected_action": [str(m.pk) for m in people],
            "apply": "yes",
            **form,
        },
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert error in page
    assert "Nothing was changed." in page
    assert 'class="errorlist' in page
    assert Tag.objects.count() == 1
    assert not Member.tags.through.objects.exists()


def test_remove_action_reports_counts_and_keeps_the_tag(staff):
    people = add_members(4)
    volunteers = Tag.objects.create(name="volunteers")
    for member in people[:3]:
        member.tags.add(volunteers)

    response = act(staff, "tag_remove_action", people, tag=str(volunteers.pk))

    assert (
        "Removed the tag &#x27;volunteers&#x27; from 3 members (1 did not have it)."
        in response.content.decode()
    )
    assert not volunteers.members.exists()
    assert Tag.objects.filter(pk=volunteers.pk).exists()


def test_remove_action_without_a_tag_changes_nothing(staff):
    people = add_members(2)
    volunteers = Tag.objects.create(name="volunteers")
    people[0].tags.add(volunteers)

    response = act(staff, "tag_remove_action", people, tag="")

    assert response.status_code == 200
    assert "Choose the tag to remove." in response.content.decode()
    assert volunteers.members.count() == 1


def test_add_action_across_every_page_with_a_filter(staff):
    people = add_members(150)
    Member.objects.filter(pk__in=[m.pk for m in people[:120]]).update(is_active=False)

    response = staff.post(
        f"{MEMBERS_URL}?is_active__exact=0",
        {
            "action": "tag_add_action",
            "_selected_action": [str(m.pk) for m in people[:100]],
            "select_across": "1",
            "new_name": "lapsed",
            "apply": "yes",
        },
        follow=True,
    )

    assert "Tagged 120 members &#x27;lapsed&#x27;." in response.content.decode()
    assert Tag.objects.get(name="lapsed").members.count() == 120


def test_registration_list_has_the_tag_column_filter_and_actions(staff):
    event = Event.objects.create(name="Picnic", starts_at="2026-07-04T12:00:00Z")
    regs = [Registration.objects.create(event=event, phone=f"+120155501{i:02d}") for i in range(3)]
    url = "/admin/events/registration/"

    response = act(staff, "tag_add_action", regs, url=url, new_name="Drivers")
    page = staff.get(url).content.decode()
    filtered = staff.get(f"{url}?tags__id__exact={Tag.objects.get().pk}")

    assert (
        "Tagged 3 registrations &#x27;Drivers&#x27;. The tag is new." in response.content.decode()
    )
    assert page.count('<td class="field-tag_list">Drivers</td>') == 3
    assert len(filtered.context["cl"].result_list) == 3
    removed = act(staff, "tag_remove_action", regs[:1], url=url, tag=str(Tag.objects.get().pk))
    assert "Removed the tag &#x27;Drivers&#x27; from 1 registration." in removed.content.decode()


def test_registration_changelist_queries_stay_bounded_with_tags(staff):
    event = Event.objects.create(name="Picnic", starts_at="2026-07-04T12:00:00Z")
    tag = Tag.objects.create(name="drivers")

    def add(start, stop):
        regs = Registration.objects.bulk_create(
            Registration(event=event, phone=f"+1201555{i:04d}") for i in range(start, stop)
        )
        Registration.tags.through.objects.bulk_create(
            Registration.tags.through(registration_id=r.pk, tag_id=tag.pk) for r in regs
        )

    add(0, 5)
    staff.get("/admin/events/registration/")
    with CaptureQueriesContext(connection) as few:
        staff.get("/admin/events/registration/")
    add(5, 300)
    with CaptureQueriesContext(connection) as many:
        staff.get("/admin/events/registration/")

    assert len(many) <= len(few)
