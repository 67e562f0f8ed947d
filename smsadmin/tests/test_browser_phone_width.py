"""An Admin on a phone (390 px wide): every admin list and the import page fit the screen.

A list too wide for the screen scrolls inside its own box, never the page, and the column a
person opens the list for (the member's phone, the delivery's status) is on screen without
scrolling at all.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from smsadmin.testing.browser import ADMIN, LiveApp, assert_no_sideways_scroll, sign_in

# A few rows in every list, with the long values real ones have.
ROWS = """
from datetime import date, time, timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from events.models import Event, Registration
from members.models import ImportJob, Member, Tag
from messaging.models import Blast, Delivery, InboundMessage, OutboxMessage, Recurrence
from suppression.models import FailureEvent, SuppressedContact, UnsubscribedContact

now = timezone.now()
admin = get_user_model().objects.get(username="phone-admin")
tags = [Tag.objects.create(name=f"Volunteers north side {i}") for i in range(3)]
event = Event.objects.create(
    name="Riverside summer picnic and community fair", starts_at=now + timedelta(days=9),
    location="Riverside Park, the big pavilion by the boat house",
)
blast = Blast.objects.create(
    name="Picnic reminder for everyone who registered", body="See you at the picnic!",
    status=Blast.Status.SENT, created_by=admin, finished_at=now,
)
for i in range(3):
    phone = f"+1201555{i:04d}"
    member = Member.objects.create(
        first_name=f"Alexandra{i}", last_name=f"Montgomery-Fitzgerald{i}", phone=phone,
        email=f"alexandra.montgomery.fitzgerald{i}@example.org",
    )
    member.tags.set(tags)
    Registration.objects.create(
        event=event, first_name=f"Bartholomew{i}", last_name=f"Vanderbilt{i}", phone=phone,
    )
    Event.objects.create(
        name=f"Neighbourhood clean-up day number {i}", starts_at=now + timedelta(days=i),
        location="The corner of Main Street and Fifth Avenue",
    )
    Delivery.objects.create(
        blast=blast, phone=phone, first_name=f"Alexandra{i}",
        last_name=f"Montgomery-Fitzgerald{i}", status=Delivery.Status.DELIVERED,
        twilio_sid=f"SM{i:032d}", sent_at=now,
    )
    OutboxMessage.objects.create(
        sid=f"SMoutbox{i:026d}", to=phone,
        body="Hi Alexandra, see you at the Riverside summer picnic on Saturday!",
    )
    InboundMessage.objects.create(
        message_sid=f"SMinbox{i:027d}", phone=phone,
        body="Thanks! Can I bring my neighbours and their kids along too?",
    )
    UnsubscribedContact.objects.create(phone=f"+1202555{i:04d}", reason="Asked by phone")
    SuppressedContact.objects.create(
        phone=f"+1203555{i:04d}", error_code=30006,
        error_meaning="Landline or unreachable carrier", reason="Permanent failure",
    )
    FailureEvent.objects.create(
        phone=f"+1203555{i:04d}", error_code=30006,
        error_meaning="Landline or unreachable carrier", action=FailureEvent.Action.SUPPRESSED,
        note="Suppressed after the first permanent failure",
    )
    get_user_model().objects.create_user(
        username=f"coordinator-{i}", email=f"coordinator.number{i}@example.org",
        first_name="Christopher", last_name="Worthington-Smythe", is_staff=True,
    )
    ImportJob.objects.create(
        pool=ImportJob.Pool.MEMBERS, file_name=f"community_members_spring_export_2026_{i}_final.csv",
        stored_as=f"job-{i}", rows=1200, new_count=900, updated_count=250, created_by=admin,
    )
    Recurrence.objects.create(
        name=f"Monthly newsletter for the whole community {i}", body="News!",
        audience_community=True, frequency=Recurrence.Frequency.MONTHLY, day_of_month=1,
        time_of_day=time(10, 0), starts_on=date.today(),
        ends_on=date.today() + timedelta(days=365), created_by=admin,
    )
emit(event.pk)
"""

# Each list, and the column (list_display field) a person opens it for.
LISTS = [
    ("/admin/members/member/", "phone"),
    ("/admin/events/registration/", "phone"),
    ("/admin/events/event/", "starts_at"),
    ("/admin/members/tag/", "member_count"),
    ("/admin/messaging/blast/", "status"),
    ("/admin/messaging/delivery/", "status"),
    ("/admin/messaging/outboxmessage/", "to"),
    ("/admin/messaging/inboundmessage/", "phone"),
    ("/admin/suppression/unsubscribedcontact/", "phone"),
    ("/admin/suppression/suppressedcontact/", "phone"),
    ("/admin/suppression/failureevent/", "phone"),
    ("/admin/smsadmin/user/", "username"),
    ("/admin/members/importjob/", "status"),
    ("/admin/messaging/recurrence/", "next_occurrence"),
]

# Where the cell of ``field`` in the list's first row lies, against the screen and every box
# around it that clips (scrolls) sideways.
_PLACE_JS = """(field) => {
  const cell = document.querySelector(`#result_list tbody tr .field-${field}`);
  const head = document.querySelector(`#result_list thead th.column-${field}`);
  if (!cell || !head) return null;
  let right = Math.min(window.innerWidth, document.documentElement.clientWidth);
  for (let p = cell.parentElement; p && p !== document.body; p = p.parentElement) {
    if (getComputedStyle(p).overflowX !== "visible") {
      right = Math.min(right, p.getBoundingClientRect().right);
    }
  }
  const c = cell.getBoundingClientRect(), h = head.getBoundingClientRect();
  return {cell: [c.left, c.right, c.width], head: [h.left, h.right, h.width], right};
}"""


@pytest.fixture(scope="module")
def event_id(live_app: LiveApp) -> int:
    live_app.create_staff("phone-admin", ADMIN, first_name="Pat")
    return live_app.shell(ROWS)


@pytest.mark.parametrize(("path", "field"), LISTS, ids=[path for path, _ in LISTS])
def test_a_list_fits_a_phone_with_its_key_column_on_screen(
    phone_page: Page, live_app: LiveApp, event_id: int, path: str, field: str
) -> None:
    sign_in(phone_page, live_app, "phone-admin")
    phone_page.goto(live_app.url_for(path))
    expect(phone_page.locator("#result_list tbody tr")).not_to_have_count(0)

    assert_no_sideways_scroll(phone_page)
    place = phone_page.evaluate(_PLACE_JS, field)
    assert place is not None, f"{path} has no column {field!r}"
    for what in ("head", "cell"):
        left, right, width = place[what]
        assert width > 0 and left >= 0 and right <= place["right"] + 0.5, (
            f"{path}: the {field} column's {what} lies at {left:.0f}..{right:.0f} px, "
            f"outside the {place['right']:.0f} px a phone shows without scrolling"
        )


@pytest.mark.parametrize("which", ["members", "event"])
def test_the_import_page_fits_a_phone(
    phone_page: Page, live_app: LiveApp, event_id: int, which: str
) -> None:
    sign_in(phone_page, live_app, "phone-admin")
    path = "/admin/members/member/import/"
    if which == "event":
        path = f"/admin/events/event/{event_id}/import/"
    phone_page.goto(live_app.url_for(path))
    expect(phone_page.get_by_label("CSV file")).to_be_visible()
    expect(phone_page.get_by_role("heading", name="What the file should look like")).to_be_visible()
    if which == "members":
        # The recent imports, whose file names have no spaces to wrap at.
        expect(phone_page.get_by_role("heading", name="Recent imports")).to_be_visible()

    assert_no_sideways_scroll(phone_page)
    expect(phone_page.get_by_role("button", name="Upload and preview")).to_be_in_viewport()
