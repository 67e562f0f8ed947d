"""First impressions in Chromium: the pages a person meets early that other modules leave out.

The lockout page and an Admin's unlock, the forced password change, the dashboard's
numbers for a seeded history, an event's registrants and its "Text these registrants"
link, and lifting a suppression (an Admin may, a Social manager may not).

The module's tests share one app and database (``live_app``): each makes its own staff,
members, events and numbers, with names and phones of its own.
"""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

from messaging.tests.test_browser_compose import OPT_OUT, shown
from smsadmin.phones import phone_display
from smsadmin.testing.browser import (
    ACTION_TIMEOUT_MS,
    ADMIN,
    DESKTOP,
    NAVIGATION_TIMEOUT_MS,
    SOCIAL_MANAGER,
    STAFF_PASSWORD,
    LiveApp,
    sign_in,
)

WRONG_PASSWORD = "Not-The-Password-77"  # noqa: S105 - deliberately wrong


def phone(test: int, n: int) -> str:
    return f"+1202555{test:02d}{n:02d}"


def messages(page: Page) -> Locator:
    return page.locator("ul.messagelist li")


def numbers_row(page: Page, table: str, day: str) -> Locator:
    """The figures (td cells) of one day's row in a chart's "The numbers" table."""
    return page.locator(f'#{table} tbody tr:has(th:text-is("{day}")) td')


# --- 1. The lockout message and the unlock -------------------------------------------------


def test_five_wrong_passwords_lock_the_account_until_an_admin_unlocks_it(
    page: Page, live_app: LiveApp
) -> None:
    live_app.create_staff("fi1-lena", first_name="Lena")
    live_app.create_staff("fi1-admin", ADMIN, first_name="Ade")

    for _ in range(4):
        sign_in(page, live_app, "fi1-lena", WRONG_PASSWORD)
        expect(page.locator(".errornote").first).to_contain_text(
            "Please enter the correct username and password"
        )
    expect(page.locator("#signin-tries-left")).to_have_text(
        "1 try left before sign-in from this address is locked for 15 minutes."
    )
    sign_in(page, live_app, "fi1-lena", WRONG_PASSWORD)

    expect(page.get_by_role("heading", name="Too many failed sign-ins")).to_be_visible()
    locked = page.locator("#content-main .errornote")
    expect(locked).to_contain_text("You are locked out after 5 failed sign-ins as fi1-lena")
    expect(locked).to_contain_text(re.compile(r"Try again in 1[45] minutes\."))
    expect(page.locator("#content-main")).to_contain_text("An Admin can unlock it now")
    expect(page).to_have_title(re.compile(r"^Locked out \| smsadmin$"))

    # The right password changes nothing while the lockout holds.
    sign_in(page, live_app, "fi1-lena")
    expect(page.get_by_role("heading", name="Too many failed sign-ins")).to_be_visible()
    expect(page.locator("#user-tools")).to_have_count(0)

    # An Admin, in a browser of their own, unlocks her from "Sign-in lockouts".
    context = page.context.browser.new_context(**DESKTOP)
    try:
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
        admin = context.new_page()
        sign_in(admin, live_app, "fi1-admin")
        expect(admin.locator("#user-tools")).to_contain_text("Welcome, Ade.")
        admin.get_by_role("link", name="Sign-in lockouts").first.click()
        expect(admin.get_by_role("heading", name="Sign-in lockouts")).to_be_visible()
        row = admin.locator("#result_list tbody tr").filter(has_text="fi1-lena")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("Locked from this address until")
        row.locator('input[name="_selected_action"]').check()
        admin.locator('select[name="action"]').select_option(label="Unlock")
        admin.get_by_role("button", name="Go").click()
        expect(messages(admin)).to_contain_text(
            "Sign-in unlocked for fi1-lena: their failed sign-ins are forgotten"
        )
        expect(admin.locator("#result_list tbody tr").filter(has_text="fi1-lena")).to_have_count(0)
    finally:
        context.close()

    sign_in(page, live_app, "fi1-lena")
    expect(page).to_have_url(live_app.url_for("/admin/"))
    expect(page.locator("#user-tools")).to_contain_text("Welcome, Lena.")


# --- 2. The forced password change ---------------------------------------------------------


def test_a_new_user_must_choose_a_password_before_reaching_the_admin(
    page: Page, live_app: LiveApp
) -> None:
    live_app.shell(
        "from django.contrib.auth.models import Group\n"
        "from smsadmin.models import User\n"
        "user = User(username='fi2-noor', first_name='Noor', email='fi2@example.org',\n"
        "            is_staff=True, must_change_password=True)\n"
        f"user.set_password({STAFF_PASSWORD!r})\n"
        "user.save()\n"
        f"user.groups.add(Group.objects.get(name={SOCIAL_MANAGER!r}))\n"
        "emit(user.pk)\n"
    )
    change_url = re.compile(r"/admin/password_change/$")

    sign_in(page, live_app, "fi2-noor")

    expect(page).to_have_url(change_url)
    expect(page).to_have_title(re.compile(r"smsadmin"))
    assert "Django administration" not in page.title()
    expect(page.locator("#site-name")).to_have_text("smsadmin")
    expect(page.locator("#content-main .errornote")).to_have_text(
        "Before you go on, choose a new password of your own."
    )

    # The admin is out of reach until the password is changed.
    page.goto(live_app.url_for("/admin/"))
    expect(page).to_have_url(change_url)
    page.goto(live_app.url_for("/admin/members/member/"))
    expect(page).to_have_url(change_url)

    new_password = "Lantern-Quarry-Mosaic-58"
    page.get_by_label("Old password").fill(STAFF_PASSWORD)
    page.get_by_label(re.compile(r"^New password:?$")).fill(new_password)
    page.get_by_label("New password confirmation").fill(new_password)
    page.get_by_role("button", name="Change my password").click()

    expect(page).to_have_url(re.compile(r"/admin/password_change/done/$"))
    expect(page.locator("#content-main")).to_contain_text("Your password was changed.")
    expect(page).to_have_title(re.compile(r"smsadmin"))
    page.get_by_role("link", name="Go on to the admin").click()
    expect(page).to_have_url(live_app.url_for("/admin/"))
    expect(page.locator("#user-tools")).to_contain_text("Welcome, Noor.")

    # And for good: the flag is lifted, the new password is the one that works.
    assert live_app.shell(
        "from smsadmin.models import User\n"
        "user = User.objects.get(username='fi2-noor')\n"
        f"emit([user.must_change_password, user.check_password({new_password!r})])\n"
    ) == [False, True]


# --- 3. The dashboard's numbers for a seeded history ---------------------------------------


def test_the_dashboard_shows_the_seeded_days_failure_codes_and_waiting_replies(
    page: Page, live_app: LiveApp
) -> None:
    live_app.create_staff("fi3-admin", ADMIN, first_name="Dana")
    phones = [phone(33, n) for n in range(1, 7)]
    seeded = live_app.shell(
        "from datetime import datetime, time, timedelta\n"
        "from django.utils import dateformat, timezone\n"
        "from members.models import Member, Tag\n"
        "from messaging.models import Blast, Delivery, InboundMessage\n"
        "from messaging.services.creating import blast_create\n"
        "from suppression.models import UnsubscribedContact\n"
        "from suppression.services import unsubscribe\n"
        f"phones = {phones!r}\n"
        "tag = Tag.objects.create(name='fi3 history')\n"
        "for n, p in enumerate(phones, 1):\n"
        "    Member.objects.create(first_name=f'Hist{n}', last_name='Three', phone=p)\\\n"
        "        .tags.add(tag)\n"
        # Waiting for approval: nothing is queued, so no worker touches its rows.
        f"blast = blast_create(body='Picnic on Sunday. ' + {OPT_OUT!r}, community=True,\n"
        "                     tag_ids=[tag.pk], approval_above=0, name='fi3 picnic')\n"
        "zone = timezone.get_default_timezone()\n"
        "today = timezone.localdate(timezone.now(), zone)\n"
        "day_a, day_b = today - timedelta(days=3), today - timedelta(days=6)\n"
        "def noon(day, minutes=0):\n"
        "    return datetime.combine(day, time(12, minutes), tzinfo=zone)\n"
        "rows = {d.phone: d.pk for d in Delivery.objects.filter(blast=blast)}\n"
        "def set_row(p, **fields):\n"
        "    Delivery.objects.filter(pk=rows[p]).update(**fields)\n"
        # Day A: 3 sent, 2 of them delivered, 1 failed (unreachable handset).
        "set_row(phones[0], status='delivered', sent_at=noon(day_a), "
        "delivered_at=noon(day_a, 5), updated_at=noon(day_a, 5))\n"
        "set_row(phones[1], status='delivered', sent_at=noon(day_a), "
        "delivered_at=noon(day_a, 6), updated_at=noon(day_a, 6))\n"
        "set_row(phones[2], status='failed', sent_at=noon(day_a), error_code=30003, "
        "updated_at=noon(day_a, 7))\n"
        # Day B: 1 sent, 2 failed (one unreachable handset, one invalid number).
        "set_row(phones[3], status='sent', sent_at=noon(day_b), updated_at=noon(day_b))\n"
        "set_row(phones[4], status='failed', error_code=30003, updated_at=noon(day_b, 1))\n"
        "set_row(phones[5], status='failed', error_code=21211, updated_at=noon(day_b, 2))\n"
        "Blast.objects.filter(pk=blast.pk).update(status=Blast.Status.SENT,\n"
        "    started_at=noon(day_b), finished_at=noon(day_a, 7))\n"
        # An opt-out on day B.
        "unsubscribe(phone=phones[3], source='keyword', evidence='STOP fi3')\n"
        "UnsubscribedContact.objects.filter(phone=phones[3]).update(created_at=noon(day_b))\n"
        # Two replies waiting, one already handled, and a STOP (not a reply).
        "InboundMessage.objects.create(message_sid='SMfi3reply1', phone=phones[0],\n"
        "    body='Can I bring my brother?', kind='reply', handled=False)\n"
        "InboundMessage.objects.create(message_sid='SMfi3reply2', phone=phones[1],\n"
        "    body='Is it still on if it rains?', kind='reply', handled=False)\n"
        "InboundMessage.objects.create(message_sid='SMfi3reply3', phone=phones[2],\n"
        "    body='Thanks!', kind='reply', handled=True, handled_at=timezone.now())\n"
        "InboundMessage.objects.create(message_sid='SMfi3stop', phone=phones[3],\n"
        "    body='STOP', kind='stop', keyword='STOP', handled=True)\n"
        "emit({'a': dateformat.format(day_a, 'D j M'), 'b': dateformat.format(day_b, 'D j M'),\n"
        "      'inbound': InboundMessage.objects.filter(kind='reply', handled=False).count()})\n"
    )
    # No other test of this module adds inbound messages.
    assert seeded["inbound"] == 2
    day_a, day_b = seeded["a"], seeded["b"]

    sign_in(page, live_app, "fi3-admin")
    expect(page).to_have_url(live_app.url_for("/admin/"))
    activity = page.locator("#activity-dashboard")
    expect(activity.get_by_role("heading", name="The last 30 days")).to_be_visible()

    # The chart is drawn, and its numbers are in a table behind "The numbers".
    chart = page.locator("svg#chart-deliveries")
    expect(chart).to_be_visible()
    numbers = page.locator("#deliveries-numbers")
    expect(numbers.locator("table")).not_to_be_visible()
    numbers.get_by_text("The numbers", exact=True).click()
    expect(numbers.locator("table")).to_be_visible()
    expect(numbers_row(page, "deliveries-numbers", day_a)).to_have_text(["3", "2", "1"])
    expect(numbers_row(page, "deliveries-numbers", day_b)).to_have_text(["1", "0", "2"])

    # The most frequent failure code first, in plain words.
    codes = page.locator("#failure-codes tbody tr")
    expect(codes.first).to_contain_text("30003")
    expect(codes.first.locator("td")).to_have_text(
        ["30003", "Unreachable destination handset", "2"]
    )
    expect(codes.filter(has_text="21211").locator("td")).to_have_text(
        ["21211", "Invalid 'To' Phone Number", "1"]
    )

    # The opt-out shows on its day.
    page.locator("#opt-outs-numbers").get_by_text("The numbers", exact=True).click()
    expect(numbers_row(page, "opt-outs-numbers", day_b)).to_have_text(["1", "0"])

    # Two replies wait; the link opens the inbox with just those.
    replies = page.locator("#inbox-replies")
    expect(replies).to_have_text("2 replies waiting in the inbox")
    replies.get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"/admin/messaging/inboundmessage/\?"))
    result = page.locator("#result_list tbody tr")
    expect(result.filter(has_text="Can I bring my brother?")).to_have_count(1)
    expect(result.filter(has_text="Is it still on if it rains?")).to_have_count(1)
    expect(result.filter(has_text="Thanks!")).to_have_count(0)
    expect(result).to_have_count(2)


# --- 4. An event's registrants and its "Text these registrants" link -----------------------


def test_an_events_page_lists_its_registrants_and_texts_them(page: Page, live_app: LiveApp) -> None:
    live_app.create_staff("fi4-sam", first_name="Sam")
    people = [
        ("Amara", "Okonkwo", phone(34, 1)),
        ("Bashir", "Haddad", phone(34, 2)),
        ("Chloe", "Fontaine", phone(34, 3)),
    ]
    event_id = live_app.shell(
        "from datetime import timedelta\n"
        "from django.utils import timezone\n"
        "from events.models import Event, Registration\n"
        "event = Event.objects.create(name='fi4 River cleanup',\n"
        "    starts_at=timezone.now() + timedelta(days=10), location='North bank')\n"
        f"for first, last, p in {people!r}:\n"
        "    Registration.objects.create(event=event, first_name=first, last_name=last,\n"
        "                                phone=p)\n"
        "emit(event.pk)\n"
    )

    sign_in(page, live_app, "fi4-sam")
    page.goto(live_app.url_for(f"/admin/events/event/{event_id}/change/"))

    expect(page.locator("#event-id")).to_contain_text(f"Event id: {event_id}")
    registrations = page.locator("#event-registrations")
    expect(registrations.get_by_role("heading")).to_have_text("Registrations: 3")
    for first, last, _ in people:
        expect(registrations.get_by_role("link", name=f"{first} {last}")).to_be_visible()
    expect(registrations.locator("tbody tr")).to_have_count(3)
    expect(page.locator("#all-registrations")).to_have_text("See all 3 registrations")

    page.locator("#text-registrants").click()

    expect(page).to_have_url(re.compile(rf"/compose/\?event={event_id}$"))
    expect(page.get_by_role("heading", name="Compose a blast")).to_be_visible()
    expect(page.locator(f'input[name="events"][value="{event_id}"]')).to_be_checked()
    expect(shown(page, "recipients")).to_have_text("3")


# --- 5. Lifting a suppression: an Admin may, a Social manager may not ----------------------


def test_an_admin_lifts_a_suppression_with_a_reason_and_a_manager_cannot(
    page: Page, live_app: LiveApp
) -> None:
    number = phone(35, 1)
    shown_number = phone_display(number)
    live_app.create_staff("fi5-sam", first_name="Sam")
    live_app.create_staff("fi5-admin", ADMIN, first_name="Ife")
    live_app.shell(
        "from suppression.models import SuppressedContact\n"
        f"SuppressedContact.objects.create(phone={number!r}, error_code=21211,\n"
        "                                 reason='fi5 invalid number')\n"
        "emit(True)\n"
    )
    list_url = live_app.url_for("/admin/suppression/suppressedcontact/")

    # A Social manager sees the suppression but is offered no way to lift it.
    sign_in(page, live_app, "fi5-sam")
    page.goto(list_url)
    row = page.locator("#result_list tbody tr").filter(has_text=shown_number)
    expect(row).to_have_count(1)
    expect(row.locator("td.field-active img")).to_have_attribute("alt", "True")
    expect(page.locator('select[name="action"] option[value="lift"]')).to_have_count(0)
    page.get_by_role("button", name="Log out").click()
    expect(page.locator("#user-tools")).to_have_count(0)

    sign_in(page, live_app, "fi5-admin")
    page.goto(list_url)
    row = page.locator("#result_list tbody tr").filter(has_text=shown_number)
    row.locator('input[name="_selected_action"]').check()
    page.locator('select[name="action"]').select_option(
        label="Lift selected suppressions (texts may reach them again)"
    )
    page.get_by_role("button", name="Go").click()

    expect(page).to_have_title(re.compile(r"^Lift these suppressions\?"))
    expect(page.locator("#content")).to_contain_text(number)
    reason = page.get_by_label("Reason (required, kept in the history):")
    expect(reason).to_have_attribute("required", "")
    reason.fill("fi5: the member says the number works again")
    page.get_by_role("button", name="Lifted").click()

    expect(messages(page)).to_contain_text("Lifted 1 suppression.")
    row = page.locator("#result_list tbody tr").filter(has_text=shown_number)
    expect(row.locator("td.field-active img")).to_have_attribute("alt", "False")
    expect(row.locator("td.field-lift_reason")).to_have_text(
        "fi5: the member says the number works again"
    )
    expect(row.locator("td.field-lifted_by")).to_contain_text("fi5-admin")

    # It moved from the active ones to the history.
    filters = page.locator("#changelist-filter")
    filters.get_by_role("link", name="Lifted (history)").click()
    expect(page.locator("#result_list tbody tr").filter(has_text=shown_number)).to_have_count(1)
    filters.get_by_role("link", name="Active", exact=True).click()
    expect(page.locator("#result_list tbody tr").filter(has_text=shown_number)).to_have_count(0)
