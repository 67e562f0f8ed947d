"""The compose page in Chromium, against gunicorn and a Celery worker: what a manager sees.

The pre-flight panel follows the typing (the counter, the encoding and the characters
that force UCS-2, the recipients after exclusions, a real member's preview); a test
reaches the manager's own phone; a confirmed form makes one blast however often it is
sent; the page fits a phone and works with the keyboard alone.

Tests share the module's app and database, so each one makes its own staff, its own
tag (the audience is "community members tagged <its tag>", never every member) and
phone numbers of its own. Data goes in and out through ``live_app.shell``.
"""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

from smsadmin.testing.browser import LiveApp, assert_no_sideways_scroll, sign_in

COMMUNITY = "Community members (every active member)"
OPT_OUT = "Reply STOP to opt out."

# Fields of a form with no accessible name: no <label>, aria-label or aria-labelledby.
UNLABELLED_JS = """(root) => [...root.querySelectorAll("input, textarea, select")]
  .filter((el) => !["hidden", "submit", "button", "reset", "image"].includes(el.type))
  .filter((el) => el.labels.length === 0 && !el.getAttribute("aria-label")
                  && !el.getAttribute("aria-labelledby"))
  .map((el) => el.outerHTML.slice(0, 120))"""


def phone(test: int, n: int) -> str:
    """A number of this test's own (the module's tests share one database)."""
    return f"+1201555{test:02d}{n:02d}"


def add_members(
    app: LiveApp,
    tag: str,
    people: list[tuple[str, str, str]],
    *,
    unsubscribed: tuple[str, ...] = (),
    suppressed: tuple[str, ...] = (),
    inactive: tuple[str, ...] = (),
) -> None:
    """Members (first name, last name, phone) tagged ``tag``; some of their numbers
    opted out (STOP) or suppressed (failed for good), some members inactive."""
    app.shell(
        "from members.models import Member, Tag\n"
        "from suppression.models import SuppressedContact\n"
        "from suppression.services import unsubscribe\n"
        f"tag = Tag.objects.create(name={tag!r})\n"
        f"inactive = {list(inactive)!r}\n"
        f"for first, last, phone in {people!r}:\n"
        "    m = Member.objects.create(first_name=first, last_name=last, phone=phone,\n"
        "                              is_active=phone not in inactive)\n"
        "    m.tags.add(tag)\n"
        f"for phone in {list(unsubscribed)!r}:\n"
        "    unsubscribe(phone=phone, source='keyword', evidence='STOP test')\n"
        f"for phone in {list(suppressed)!r}:\n"
        "    SuppressedContact.objects.create(phone=phone, error_code=21211)\n"
        "emit(True)\n"
    )


def outbox(app: LiveApp, phones: list[str]) -> list[list[str]]:
    """[to, body] of every message the console backend 'sent' to ``phones``, oldest first."""
    return app.shell(
        "from messaging.models import OutboxMessage\n"
        f"rows = OutboxMessage.objects.filter(to__in={phones!r}).order_by('created_at', 'id')\n"
        "emit([[r.to, r.body] for r in rows])\n"
    )


def blasts_with_body(app: LiveApp, body: str) -> list[int]:
    return app.shell(
        "from messaging.models import Blast\n"
        f"emit(list(Blast.objects.filter(body={body!r}).values_list('pk', flat=True)))\n"
    )


def panel(page: Page) -> Locator:
    return page.locator("#preflight-panel")


def shown(page: Page, testid: str) -> Locator:
    """One figure of the pre-flight panel (its data-testid)."""
    return panel(page).get_by_test_id(testid)


def messages(page: Page) -> Locator:
    return page.locator("ul.messagelist li")


def open_compose(page: Page, app: LiveApp, username: str) -> None:
    sign_in(page, app, username)
    page.goto(app.url_for("/compose/"))
    expect(page.get_by_role("heading", name="Compose a blast")).to_be_visible()


def choose_tagged_members(page: Page, tag: str) -> None:
    page.get_by_label(COMMUNITY).check()
    page.get_by_label(tag, exact=True).check()


def test_typing_shows_the_encoding_names_an_emoji_and_replaces_a_curly_apostrophe(
    page: Page, live_app: LiveApp
) -> None:
    live_app.create_staff("c1-sam", first_name="Sam")
    open_compose(page, live_app, "c1-sam")
    body = page.get_by_label("Message")

    body.click()
    page.keyboard.type("Hello friends")
    expect(shown(page, "encoding")).to_have_text("GSM-7")
    expect(shown(page, "segments")).to_have_text("1 segment")
    expect(shown(page, "characters")).to_have_text("13 of 1,600 characters")
    expect(shown(page, "ucs2")).to_have_count(0)

    page.keyboard.type(" \N{GRINNING FACE}")
    expect(shown(page, "encoding")).to_have_text("UCS-2")
    expect(shown(page, "ucs2")).to_contain_text("Sent as UCS-2 (70 per segment")
    expect(shown(page, "ucs2").locator("li")).to_have_text(["\N{GRINNING FACE} grinning face"])
    expect(shown(page, "segments")).to_have_text("1 segment")

    # Backspace takes the whole emoji away: plain text again.
    page.keyboard.press("Backspace")
    expect(shown(page, "encoding")).to_have_text("GSM-7")
    expect(body).to_have_value("Hello friends ")

    page.keyboard.type("we\N{RIGHT SINGLE QUOTATION MARK}re here")
    expect(shown(page, "encoding")).to_have_text("UCS-2")
    expect(shown(page, "ucs2")).to_contain_text(
        "\N{RIGHT SINGLE QUOTATION MARK} right single quotation mark (can be replaced by ')"
    )
    replace = panel(page).get_by_role("button", name="Replace look-alikes with plain characters")
    replace.click()

    expect(body).to_have_value("Hello friends we're here")
    expect(shown(page, "encoding")).to_have_text("GSM-7")
    expect(shown(page, "ucs2")).to_have_count(0)
    expect(replace).to_have_count(0)


def test_a_placeholder_goes_in_at_the_cursor_and_the_preview_shows_a_real_first_name(
    page: Page, live_app: LiveApp
) -> None:
    live_app.create_staff("c2-ana", first_name="Ana")
    add_members(
        live_app,
        "c2 choir",
        [("Amara", "Okafor", phone(2, 1)), ("Bruno", "Silva", phone(2, 2))],
    )
    open_compose(page, live_app, "c2-ana")
    choose_tagged_members(page, "c2 choir")
    body = page.get_by_label("Message")

    body.click()
    page.keyboard.type("Hi ! Choir is at 7. " + OPT_OUT)
    # The cursor goes back to just after "Hi ", where the name belongs.
    page.keyboard.press("Home")
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    page.locator(".placeholder-insert", has_text="{first_name}").click()

    expect(body).to_have_value("Hi {first_name}! Choir is at 7. " + OPT_OUT)
    expect(body).to_be_focused()
    expect(panel(page).get_by_role("heading", name="Preview for Amara Okafor")).to_be_visible()
    expect(shown(page, "preview")).to_have_text("Hi Amara! Choir is at 7. " + OPT_OUT)
    expect(shown(page, "recipients")).to_have_text("2")

    # Typing goes on at the cursor, after the placeholder.
    page.keyboard.type(" and friends")
    expect(body).to_have_value("Hi {first_name} and friends! Choir is at 7. " + OPT_OUT)
    expect(shown(page, "preview")).to_have_text("Hi Amara and friends! Choir is at 7. " + OPT_OUT)


def test_the_recipient_count_leaves_out_unsubscribed_suppressed_and_inactive_members(
    page: Page, live_app: LiveApp
) -> None:
    live_app.create_staff("c3-lee", first_name="Lee")
    people = [
        ("Ada", "One", phone(3, 1)),
        ("Ben", "Two", phone(3, 2)),
        ("Cy", "Three", phone(3, 3)),
        ("Dee", "Stopped", phone(3, 4)),
        ("Eve", "Bounced", phone(3, 5)),
        ("Fay", "Gone", phone(3, 6)),
    ]
    add_members(
        live_app,
        "c3 garden",
        people,
        unsubscribed=(phone(3, 4),),
        suppressed=(phone(3, 5),),
        inactive=(phone(3, 6),),
    )
    open_compose(page, live_app, "c3-lee")
    choose_tagged_members(page, "c3 garden")
    page.get_by_label("Message").fill("Garden day on Sunday. " + OPT_OUT)

    expect(shown(page, "recipients")).to_have_text("3")
    expect(panel(page).locator(".preflight-recipients")).to_have_text(
        "3 will get it: Community members tagged c3 garden."
    )
    expect(shown(page, "breakdown").locator("li")).to_have_text(
        [
            "5 active members",
            "1 unsubscribed: not texted",
            "1 suppressed (number failed for good): not texted",
            "1 inactive member: not included",
        ]
    )
    # The preview is for someone who gets it.
    expect(shown(page, "preview")).to_have_text("Garden day on Sunday. " + OPT_OUT)
    expect(panel(page).get_by_role("heading", name="Preview for Ada One")).to_be_visible()

    page.get_by_role("button", name="Review and confirm").click()
    summary = page.get_by_test_id("summary-recipients")
    expect(summary.locator("strong")).to_have_text("3")
    expect(summary.locator(".help")).to_have_text(
        re.compile(r"^\(left out: 1 unsubscribed; 1 suppressed; 1 inactive;? ?\)$")
    )
    expect(page.get_by_role("button", name="Confirm and send to 3")).to_be_visible()


def test_send_a_test_to_me_reaches_the_managers_mobile_and_says_so(
    page: Page, live_app: LiveApp
) -> None:
    mobile = phone(4, 90)
    live_app.create_staff("c4-kim", first_name="Kim", mobile_phone=mobile)
    add_members(live_app, "c4 youth", [("Nia", "Brown", phone(4, 1))])
    open_compose(page, live_app, "c4-kim")
    choose_tagged_members(page, "c4 youth")
    text = "Hi {first_name}, youth night is Friday. " + OPT_OUT
    page.get_by_label("Message").fill(text)
    expect(shown(page, "recipients")).to_have_text("1")

    page.get_by_role("button", name="Send a test to me").click()

    expect(messages(page)).to_have_text(f"Test sent to your mobile, {mobile}.")
    # The form is as the manager left it, ready to confirm.
    expect(page.get_by_label("Message")).to_have_value(text)
    expect(page.get_by_label("c4 youth", exact=True)).to_be_checked()
    # Exactly that message, as the first recipient gets it, to the manager's phone only.
    rendered = "Hi Nia, youth night is Friday. " + OPT_OUT
    assert outbox(live_app, [mobile, phone(4, 1)]) == [[mobile, rendered]]


def test_send_a_test_to_me_without_a_mobile_says_how_to_add_one(
    page: Page, live_app: LiveApp
) -> None:
    live_app.create_staff("c4-nomobile", first_name="Jo")
    add_members(live_app, "c4b youth", [("Omar", "Haddad", phone(4, 11))])
    open_compose(page, live_app, "c4-nomobile")
    choose_tagged_members(page, "c4b youth")
    page.get_by_label("Message").fill("Hello {first_name}. " + OPT_OUT)

    page.get_by_role("button", name="Send a test to me").click()

    expect(messages(page)).to_have_text(
        "You have no mobile number on your profile. An Admin can add it under "
        "Users (Mobile phone); then send the test again."
    )
    expect(page.get_by_label("Message")).to_have_value("Hello {first_name}. " + OPT_OUT)
    assert outbox(live_app, [phone(4, 11)]) == []


def review_and_confirm_page(page: Page, app: LiveApp, username: str, tag: str, body: str) -> None:
    """Compose ``body`` to the members tagged ``tag`` and go on to the confirm step."""
    open_compose(page, app, username)
    choose_tagged_members(page, tag)
    page.get_by_label("Message").fill(body)
    expect(shown(page, "recipients")).not_to_have_text("0")
    page.get_by_role("button", name="Review and confirm").click()
    expect(page.get_by_role("heading", name="Check and confirm")).to_be_visible()


def test_confirming_the_same_form_again_after_going_back_makes_one_blast(
    page: Page, live_app: LiveApp
) -> None:
    live_app.create_staff("c5-ray", first_name="Ray")
    add_members(live_app, "c5 band", [("Ivy", "Ng", phone(5, 1)), ("Jon", "Ortiz", phone(5, 2))])
    body = "Band practice moved to 6pm. " + OPT_OUT
    review_and_confirm_page(page, live_app, "c5-ray", "c5 band", body)
    expect(page.get_by_text("Nothing has been sent yet. Check this, then confirm.")).to_be_visible()
    expect(page.get_by_test_id("summary-recipients")).to_have_text("2")
    expect(page.get_by_test_id("summary-audience")).to_have_text("Community members tagged c5 band")
    expect(page.get_by_test_id("summary-preview")).to_have_text(body)

    page.get_by_role("button", name="Confirm and send to 2").click()
    expect(page).to_have_url(re.compile(r"/blasts/\d+/$"))
    blast_url = page.url
    expect(messages(page)).to_have_text("Sending to 2 people.")

    # Back to the confirm page, and confirm once more.
    page.go_back()
    confirm = page.get_by_role("button", name="Confirm and send to 2")
    expect(confirm).to_be_visible()
    confirm.click()

    expect(page).to_have_url(blast_url)
    expect(messages(page)).to_have_text("This form was already sent: here is the blast it created.")
    assert len(blasts_with_body(live_app, body)) == 1
    expect(page.locator("#blast-status")).to_have_text("Sent", timeout=15_000)
    # Each member got it once.
    assert sorted(to for to, _ in outbox(live_app, [phone(5, 1), phone(5, 2)])) == [
        phone(5, 1),
        phone(5, 2),
    ]


def test_double_clicking_confirm_makes_one_blast(page: Page, live_app: LiveApp) -> None:
    live_app.create_staff("c5-dot", first_name="Dot")
    add_members(live_app, "c5b band", [("Kai", "Lim", phone(5, 11))])
    body = "Double-click safe? " + OPT_OUT
    review_and_confirm_page(page, live_app, "c5-dot", "c5b band", body)

    page.get_by_role("button", name="Confirm and send to 1").dblclick()

    expect(page).to_have_url(re.compile(r"/blasts/\d+/$"))
    expect(page.locator("#blast-status")).to_have_text("Sent", timeout=15_000)
    blasts = blasts_with_body(live_app, body)
    assert len(blasts) == 1
    assert page.url == live_app.url_for(f"/blasts/{blasts[0]}/")
    assert outbox(live_app, [phone(5, 11)]) == [[phone(5, 11), body]]


def test_compose_confirm_and_the_blast_page_fit_a_phone_screen(
    phone_page: Page, live_app: LiveApp
) -> None:
    page = phone_page
    live_app.create_staff("c9-pia", first_name="Pia")
    add_members(
        live_app,
        "c9 walkers",
        [("Quinn", "Rao", phone(9, 1)), ("Rosa", "Diaz", phone(9, 2)), ("Sol", "Tan", phone(9, 3))],
        unsubscribed=(phone(9, 3),),
    )
    open_compose(page, live_app, "c9-pia")
    choose_tagged_members(page, "c9 walkers")
    body = page.get_by_label("Message")
    # A long unbroken word and a curly quote: the panel's widest content.
    body.tap()
    page.keyboard.type(
        "Hi {first_name}, the walk\N{RIGHT SINGLE QUOTATION MARK}s on! "
        "https://example.org/walks/2026/spring/route-and-meeting-point " + OPT_OUT
    )
    expect(shown(page, "recipients")).to_have_text("2")
    expect(shown(page, "ucs2")).to_be_visible()
    expect(shown(page, "breakdown")).to_contain_text("1 unsubscribed: not texted")

    assert_no_sideways_scroll(page)
    expect(body).to_be_visible()
    expect(body).to_be_in_viewport()
    review = page.get_by_role("button", name="Review and confirm")
    expect(review).to_be_visible()
    # The look-alike button and the textarea work by touch.
    shown(page, "ucs2").get_by_role("button", name="Replace look-alikes").tap()
    expect(shown(page, "encoding")).to_have_text("GSM-7")
    review.tap()

    confirm = page.get_by_role("button", name="Confirm and send to 2")
    expect(confirm).to_be_visible()
    assert_no_sideways_scroll(page)
    confirm.tap()

    expect(page).to_have_url(re.compile(r"/blasts/\d+/$"))
    expect(page.locator("#blast-status")).to_have_text("Sent", timeout=15_000)
    expect(page.locator("#blast-recipients")).to_contain_text("Quinn Rao")
    assert_no_sideways_scroll(page)


def tab_to(page: Page, target: Locator, *, limit: int = 60) -> None:
    """Press Tab until ``target`` has the focus, as a keyboard user would."""
    handle = target.element_handle()
    for _ in range(limit):
        if page.evaluate("(el) => document.activeElement === el", handle):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{target} was not reached with {limit} presses of Tab")


def test_the_form_is_labelled_and_works_with_the_keyboard_alone(
    page: Page, live_app: LiveApp
) -> None:
    live_app.create_staff("c10-max", first_name="Max")
    add_members(live_app, "c10 readers", [("Tess", "Uribe", phone(10, 1))])
    open_compose(page, live_app, "c10-max")

    form = page.locator("#compose-form")
    assert form.evaluate(UNLABELLED_JS) == []
    body = page.get_by_label("Message")
    expect(body).to_have_js_property("tagName", "TEXTAREA")
    community = page.get_by_label(COMMUNITY)
    tag = page.get_by_label("c10 readers", exact=True)

    tab_to(page, community)
    page.keyboard.press("Space")
    expect(community).to_be_checked()
    tab_to(page, tag)
    page.keyboard.press("Space")
    expect(tag).to_be_checked()
    tab_to(page, body)
    page.keyboard.type("Book club at 8. " + OPT_OUT)
    tab_to(page, page.get_by_label("Name for staff (optional)"))
    page.keyboard.type("c10 book club")
    expect(shown(page, "recipients")).to_have_text("1")
    tab_to(page, page.get_by_role("button", name="Review and confirm"))
    page.keyboard.press("Enter")

    confirm = page.get_by_role("button", name="Confirm and send to 1")
    expect(confirm).to_be_visible()
    tab_to(page, confirm)
    page.keyboard.press("Space")

    expect(page).to_have_url(re.compile(r"/blasts/\d+/$"))
    expect(messages(page)).to_have_text(re.compile(r"^\s*Sending to 1 (person|people)\.\s*$"))
    expect(page.locator("#blast-audience")).to_have_text("Community members tagged c10 readers")
    expect(page.locator(".blast-body")).to_have_text("Book club at 8. " + OPT_OUT)
    assert len(blasts_with_body(live_app, "Book club at 8. " + OPT_OUT)) == 1
