"""The blast page in Chromium, against gunicorn and a Celery worker sending for real.

The worker sends through the console backend (every message lands in the outbox) at
2 messages a second, slow enough to watch: the page follows the blast by itself to the
end with the right counts, Pause stops the sending and Resume finishes it, and a Social
manager's blast to more than 2 people waits until an Admin approves it.

The module's tests share one app and database: each makes its own staff, its own tag
(the audience is always "community members tagged <its tag>") and its own numbers.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from messaging.tests.test_browser_compose import (
    OPT_OUT,
    UNLABELLED_JS,
    add_members,
    choose_tagged_members,
    messages,
    outbox,
    shown,
)
from smsadmin.phones import phone_display
from smsadmin.testing.browser import (
    ADMIN,
    SOCIAL_MANAGER,
    LiveApp,
    assert_no_sideways_scroll,
    screenshot_path,
    sign_in,
)

RATE = 2  # messages a second, for the whole deployment
THRESHOLD = 2  # a Social manager's blast to more people waits for an Admin

# Time for the worker to send what a test sends at RATE, and for the page (which asks
# every 3 seconds) to show it, with room for a busy machine.
SENDING = 30_000


@pytest.fixture(scope="module")
def live_app_env() -> dict[str, str]:
    return {"SMS_RATE_PER_SECOND": str(RATE), "BLAST_APPROVAL_THRESHOLD": str(THRESHOLD)}


def phone(test: int, n: int) -> str:
    return f"+1202555{test:02d}{n:02d}"


def count(page: Page, key: str) -> Locator:
    """The figure beside one status in the page's counts ("Sent", "Skipped", ...)."""
    return page.locator(f'.blast-counts [data-count="{key}"]')


def status(page: Page) -> Locator:
    return page.locator("#blast-status")


def compose_and_confirm(
    page: Page, app: LiveApp, username: str, tag: str, body: str, button: str
) -> None:
    """Sign in, write ``body`` to the members tagged ``tag``, review, press ``button``."""
    sign_in(page, app, username)
    page.goto(app.url_for("/compose/"))
    choose_tagged_members(page, tag)
    page.get_by_label("Message").fill(body)
    expect(shown(page, "recipients")).not_to_have_text("0")
    page.get_by_role("button", name="Review and confirm").click()
    page.get_by_role("button", name=button).click()
    expect(page).to_have_url(re.compile(r"/blasts/\d+/$"))


def outbox_count(app: LiveApp, phones: list[str]) -> Counter[str]:
    return Counter(to for to, _ in outbox(app, phones))


def test_the_progress_bar_moves_to_done_by_itself_with_the_right_counts(
    page: Page, live_app: LiveApp
) -> None:
    live_app.create_staff("b6-ada", ADMIN, first_name="Ada")
    phones = [phone(6, n) for n in range(1, 12)]
    add_members(
        live_app,
        "b6 runners",
        [(f"Runner{n}", "Six", p) for n, p in enumerate(phones, 1)],
        unsubscribed=(phones[-1],),
    )
    body = "Race day is Saturday at 9. " + OPT_OUT
    compose_and_confirm(page, live_app, "b6-ada", "b6 runners", body, "Confirm and send to 10")

    expect(messages(page)).to_have_text("Sending to 10 people.")
    handled = page.locator('#blast-handled [data-field="handled"]')
    expect(page.locator('#blast-handled [data-field="total"]')).to_have_text("11")
    # Part of the way: the skipped member and some of the ten, not all of them. Sending
    # ten takes about 5 s at 2 a second; the page asks every 3 s.
    expect(handled).to_have_text(re.compile(r"^([2-9]|10)$"), timeout=SENDING)
    expect(status(page)).to_have_text("Sending")
    expect(page.locator("#blast-live-note")).to_be_visible()

    # Nobody reloads the page: it follows the blast to its end.
    expect(status(page)).to_have_text("Sent", timeout=SENDING)
    expect(page.locator("#blast-status-words")).to_have_text(
        "Finished: every recipient who could be texted was."
    )
    expect(count(page, "sent")).to_have_text("10")
    expect(count(page, "skipped")).to_have_text("1")
    for key in ("pending", "sending", "failed", "unknown", "cancelled"):
        expect(count(page, key)).to_have_text("0")
    bar = page.locator("#blast-bar")
    expect(bar).to_have_js_property("max", 11)
    expect(bar).to_have_js_property("value", 11)
    expect(bar).to_have_attribute("aria-valuetext", "11 of 11 recipients handled")
    expect(page.locator("#blast-percent")).to_have_text("100%")
    expect(page.locator("#blast-handled")).to_contain_text("11 of 11 recipients handled.")
    expect(page.locator("#blast-live-note")).to_be_hidden()
    rows = page.locator("#blast-recipients tbody tr")
    # The page shows numbers as people write them.
    expect(rows.filter(has_text=phone_display(phones[-1]))).to_contain_text(
        "Skipped (unsubscribed)"
    )
    expect(rows.filter(has_text="Sent")).to_have_count(10)
    # No Pause or Cancel once it is over.
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)

    sent = outbox_count(live_app, phones)
    assert sent == Counter(phones[:-1])


def test_pause_stops_the_sending_and_resume_finishes_it_texting_everyone_once(
    page: Page, live_app: LiveApp
) -> None:
    live_app.create_staff("b7-bo", ADMIN, first_name="Bo")
    phones = [phone(7, n) for n in range(1, 21)]
    add_members(
        live_app, "b7 tenants", [(f"Tenant{n}", "Seven", p) for n, p in enumerate(phones, 1)]
    )
    body = "Tenants meeting on Thursday. " + OPT_OUT
    compose_and_confirm(page, live_app, "b7-bo", "b7 tenants", body, "Confirm and send to 20")

    # Once the page shows it sending (it reloads itself when the status changes) and
    # some messages went out, pause it: 20 take about 10 s.
    expect(status(page)).to_have_text("Sending", timeout=SENDING)
    expect(count(page, "sent")).to_have_text(re.compile(r"^([1-9]|1[0-4])$"), timeout=SENDING)
    page.get_by_role("button", name="Pause").click()

    expect(messages(page)).to_have_text(
        "Paused. Messages already on their way finish; nothing new is sent until someone "
        "resumes the blast."
    )
    expect(status(page)).to_have_text("Paused")
    expect(page.locator("#blast-paused")).to_contain_text("Paused by staff.")
    expect(page.locator("#blast-paused")).to_contain_text(
        "What to do: Resume it to send the rest, or cancel it."
    )
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    resume = page.get_by_role("button", name="Resume")
    expect(resume).to_be_visible()

    # Nothing more goes out while it is paused: the outbox holds the same messages a
    # few seconds later, and so does the page (it still asks for the figures).
    before = sum(outbox_count(live_app, phones).values())
    assert 0 < before < 20
    # A wait for nothing to happen: the one fixed wait of these tests.
    page.wait_for_timeout(3_500)
    assert sum(outbox_count(live_app, phones).values()) == before
    expect(count(page, "sent")).to_have_text(str(before), timeout=SENDING)
    expect(count(page, "pending")).to_have_text(str(20 - before))
    expect(status(page)).to_have_text("Paused")

    resume.click()
    expect(messages(page)).to_have_text("Resumed: the rest of the list is being sent.")
    expect(status(page)).to_have_text("Sent", timeout=SENDING)
    expect(count(page, "sent")).to_have_text("20")
    expect(count(page, "pending")).to_have_text("0")
    expect(page.locator("#blast-bar")).to_have_js_property("value", 20)
    # Every member texted, each exactly once.
    assert outbox_count(live_app, phones) == Counter(phones)


def test_a_social_managers_big_blast_waits_until_an_admin_approves_it(
    page: Page, live_app: LiveApp, browser: Browser, request: pytest.FixtureRequest
) -> None:
    live_app.create_staff("b8-sm", SOCIAL_MANAGER, first_name="Sky")
    live_app.create_staff("b8-admin", ADMIN, first_name="Ola")
    phones = [phone(8, n) for n in range(1, 4)]
    add_members(
        live_app, "b8 parents", [(f"Parent{n}", "Eight", p) for n, p in enumerate(phones, 1)]
    )
    body = "School fair needs helpers. " + OPT_OUT

    sign_in(page, live_app, "b8-sm")
    page.goto(live_app.url_for("/compose/"))
    choose_tagged_members(page, "b8 parents")
    page.get_by_label("Message").fill(body)
    expect(shown(page, "recipients")).to_have_text("3")
    expect(shown(page, "approval")).to_have_text(
        "More than 2 recipients: an Admin must approve this blast before it is sent."
    )
    page.get_by_role("button", name="Review and confirm").click()
    expect(page.locator(".preflight-approval")).to_have_text(
        "It goes to more than 2 people, so an Admin must approve it before anything is sent."
    )
    page.get_by_role("button", name="Submit for approval").click()

    expect(page).to_have_url(re.compile(r"/blasts/\d+/$"))
    blast_url = page.url
    expect(messages(page)).to_have_text(
        "Saved. It goes to 3 people, more than 2, so it waits for an Admin's approval "
        "before anything is sent."
    )
    expect(status(page)).to_have_text("Waiting for approval")
    expect(page.locator("#blast-approval")).to_contain_text(
        "This blast waits for an Admin's approval before anything is sent."
    )
    # Its author cannot approve it, only withdraw it.
    expect(page.get_by_role("button", name="Approve and send")).to_have_count(0)
    expect(page.get_by_role("button", name="Withdraw")).to_be_visible()
    expect(count(page, "pending")).to_have_text("3")
    assert outbox(live_app, phones) == []

    admin_context = browser.new_context(viewport={"width": 1280, "height": 900})
    admin = admin_context.new_page()
    try:
        sign_in(admin, live_app, "b8-admin")
        admin.goto(blast_url)
        expect(admin.locator("#blast-status")).to_have_text("Waiting for approval")
        admin.get_by_label("Note (optional, shown on the blast)").fill("Fine, go ahead.")
        admin.get_by_role("button", name="Approve and send").click()
        expect(admin.locator("ul.messagelist li")).to_have_text("Approved: sending to 3 people.")
        expect(admin.locator("#blast-review")).to_contain_text("Approved by b8-admin on")
        expect(admin.locator(".blast-review-note")).to_have_text("Fine, go ahead.")
        expect(admin.locator("#blast-status")).to_have_text("Sent", timeout=SENDING)
    finally:
        admin.screenshot(path=str(screenshot_path(request.node, "-admin")), full_page=True)
        admin_context.close()

    # The manager's page, left open, follows the blast out by itself.
    expect(status(page)).to_have_text("Sent", timeout=SENDING)
    expect(count(page, "sent")).to_have_text("3")
    expect(page.locator("#blast-review")).to_contain_text("Approved by b8-admin")
    expect(page.get_by_role("button", name="Withdraw")).to_have_count(0)
    assert outbox_count(live_app, phones) == Counter(phones)


def waiting_blast(app: LiveApp, body: str, *, tag: str, author: str) -> int:
    """A Social manager's blast to the members tagged ``tag``, waiting for approval,
    made as compose's confirm step makes it (no name: the message's first line)."""
    return app.shell(
        "from django.contrib.auth import get_user_model\n"
        "from members.models import Tag\n"
        "from messaging.services.creating import blast_create\n"
        "blast = blast_create(\n"
        f"    body={body!r}, community=True,\n"
        f"    tag_ids=[Tag.objects.get(name={tag!r}).pk],\n"
        f"    created_by=get_user_model().objects.get(username={author!r}),\n"
        f"    approval_above={THRESHOLD},\n"
        ")\n"
        "emit(blast.pk)\n"
    )


def test_a_blast_page_with_its_approval_forms_fits_a_phone_screen(
    phone_page: Page, live_app: LiveApp
) -> None:
    page = phone_page
    live_app.create_staff("b9-sm", SOCIAL_MANAGER, first_name="Tui")
    live_app.create_staff("b9-admin", ADMIN, first_name="Uma")
    phones = [phone(9, n) for n in range(1, 5)]
    add_members(
        live_app,
        "b9 neighbours",
        [
            ("Wilhelmina-Alexandra", "Featherstonehaugh-Montgomery", phones[0]),
            ("Xavi", "Nine", phones[1]),
            ("Yara", "Nine", phones[2]),
            ("Zed", "Nine", phones[3]),
        ],
        suppressed=(phones[3],),
    )
    # A long unbroken link in the message (not in its first line, the blast's title).
    body = (
        "Street party on our road this Saturday afternoon, all welcome!\n"
        "Details: https://example.org/neighbours/2026/street-party-road-closure-and-"
        "volunteer-rota " + OPT_OUT
    )
    blast_id = waiting_blast(live_app, body, tag="b9 neighbours", author="b9-sm")

    sign_in(page, live_app, "b9-admin")
    page.goto(live_app.url_for(f"/blasts/{blast_id}/"))
    expect(status(page)).to_have_text("Waiting for approval")
    assert_no_sideways_scroll(page)
    assert page.locator("#content-main").evaluate(UNLABELLED_JS) == []
    note = page.get_by_label("Note (optional, shown on the blast)")
    expect(page.get_by_label("Why it is rejected (shown to its author)")).to_be_visible()
    expect(page.get_by_label("Status", exact=True)).to_be_visible()
    note.tap()
    page.keyboard.type("OK for the street party.")
    approve = page.get_by_role("button", name="Approve and send")
    expect(approve).to_be_visible()
    approve.tap()

    expect(status(page)).to_have_text("Sent", timeout=SENDING)
    expect(count(page, "sent")).to_have_text("3")
    expect(count(page, "skipped")).to_have_text("1")
    rows = page.locator("#blast-recipients tbody tr")
    expect(rows.filter(has_text=phone_display(phones[3]))).to_contain_text("Skipped (suppressed)")
    expect(rows.filter(has_text="Featherstonehaugh-Montgomery")).to_be_visible()
    assert_no_sideways_scroll(page)
    assert outbox_count(live_app, phones) == Counter(phones[:3])


def test_a_blast_whose_first_line_is_a_long_link_fits_a_phone_screen(
    phone_page: Page, live_app: LiveApp
) -> None:
    page = phone_page
    live_app.create_staff("b9b-sm", SOCIAL_MANAGER, first_name="Vic")
    add_members(
        live_app,
        "b9b street",
        [(f"Neighbour{n}", "Street", phone(19, n)) for n in range(1, 4)],
    )
    body = (
        "Street party! Details: https://example.org/neighbours/2026/street-party-"
        "road-closure-and-volunteer-rota " + OPT_OUT
    )
    blast_id = waiting_blast(live_app, body, tag="b9b street", author="b9b-sm")

    sign_in(page, live_app, "b9b-sm")
    page.goto(live_app.url_for(f"/blasts/{blast_id}/"))
    expect(status(page)).to_have_text("Waiting for approval")
    assert_no_sideways_scroll(page)
