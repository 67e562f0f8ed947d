"""The browser harness on pages that exist: sign-in, the admin index, members, CSV import.

Chromium drives gunicorn and a Celery worker started for this module (``live_app``);
every test leaves a screenshot of its last page (see docs/TESTING.md).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Locator, Page, Response, expect

from smsadmin.testing.browser import (
    ADMIN,
    AppLauncher,
    LiveApp,
    assert_no_sideways_scroll,
    sign_in,
)


@pytest.fixture(scope="module")
def live_app_env() -> dict[str, str]:
    # Every import file here is bigger than this, so the worker previews and imports it,
    # as it would a real member list, instead of the request doing it.
    return {"IMPORT_SYNC_MAX_ROWS": "1"}


def members_link(page: Page) -> Locator:
    """The member list's entry on the admin index (the app's heading links elsewhere)."""
    # The index groups models as staff think of them: members are under "Contacts".
    return page.locator("#content-main .app-contacts").get_by_role(
        "link", name="Members", exact=True
    )


def import_count(page: Page, label: str) -> Locator:
    """The number beside ``label`` in an import's preview table."""
    return page.locator(f'#import-counts tr:has(th:text-is("{label}")) td').first


def test_social_manager_signs_in_and_sees_the_admin_index_with_their_name(
    page: Page, live_app: LiveApp
) -> None:
    live_app.create_staff("sam-rivera", first_name="Sam", last_name="Rivera")
    broken: list[str] = []

    def note_broken(response: Response) -> None:
        if response.status >= 400:
            broken.append(f"{response.status} {response.url}")

    page.on("response", note_broken)

    sign_in(page, live_app, "sam-rivera")

    expect(page).to_have_url(live_app.url_for("/admin/"))
    expect(page.locator("#user-tools")).to_contain_text("Welcome, Sam.")
    expect(page.get_by_role("heading", name="Contacts, events and blasts")).to_be_visible()
    expect(members_link(page)).to_be_visible()
    # User accounts are for Admins only.
    expect(page.get_by_role("link", name="Users", exact=True)).to_have_count(0)
    # An unstyled page is what a person sees when collected static files are not served.
    assert broken == []
    expect(page.locator("#header")).not_to_have_css("background-color", "rgba(0, 0, 0, 0)")


def test_a_wrong_password_shows_the_error_and_stays_signed_out(
    page: Page, live_app: LiveApp
) -> None:
    live_app.create_staff("wren-okafor", first_name="Wren")

    sign_in(page, live_app, "wren-okafor", "Not-The-Password-99")

    expect(page.locator(".errornote")).to_contain_text(
        "Please enter the correct username and password for a staff account."
    )
    expect(page).to_have_url(re.compile(r"/admin/login/"))
    expect(page.locator("#user-tools")).to_have_count(0)


def test_the_member_list_shows_members_created_through_the_programs(
    page: Page, live_app: LiveApp
) -> None:
    live_app.create_staff("mia-chen", first_name="Mia")
    live_app.shell(
        "from members.models import Member\n"
        "Member.objects.bulk_create([\n"
        "    Member(first_name='Ngozi', last_name='Adeyemi', phone='+12025550171'),\n"
        "    Member(first_name='Tomasz', last_name='Kowalczyk', phone='+12025550172'),\n"
        "])\n"
        "emit(True)\n"
    )
    sign_in(page, live_app, "mia-chen")

    members_link(page).click()

    rows = page.locator("#result_list tbody tr")
    expect(rows.filter(has_text="Adeyemi")).to_contain_text("Ngozi")
    expect(rows.filter(has_text="Kowalczyk")).to_contain_text("Tomasz")
    expect(page.get_by_role("link", name="Import CSV")).to_be_visible()


def test_sign_in_and_the_admin_index_fit_a_phone_screen(
    phone_page: Page, live_app: LiveApp
) -> None:
    live_app.create_staff("pat-lee", first_name="Pat")

    phone_page.goto(live_app.url_for("/admin/login/"))
    expect(phone_page.get_by_role("button", name="Log in")).to_be_visible()
    assert_no_sideways_scroll(phone_page)

    sign_in(phone_page, live_app, "pat-lee")
    expect(phone_page.locator("#user-tools")).to_contain_text("Welcome, Pat.")
    assert_no_sideways_scroll(phone_page)


def test_a_csv_file_is_previewed_then_its_members_are_imported(
    page: Page, live_app: LiveApp
) -> None:
    live_app.create_staff("ines-import", first_name="Ines")
    csv = (
        "First name,Last name,Mobile\n"
        "Ada,Lovelace,(202) 555-0181\n"
        "Grace,Hopper,+1 202 555 0182\n"
        "Nobody,Here,not a number\n"
    )
    sign_in(page, live_app, "ines-import")
    members_link(page).click()
    page.get_by_role("link", name="Import CSV").click()

    page.get_by_label("CSV file").set_input_files(
        files=[{"name": "members.csv", "mimeType": "text/csv", "buffer": csv.encode()}]
    )
    page.get_by_role("button", name="Upload and preview").click()

    # The worker reads the file; the page follows its progress and shows the preview.
    preview = page.get_by_role("heading", name="Preview: nothing has been written yet")
    expect(preview).to_be_visible(timeout=20_000)
    expect(import_count(page, "New")).to_have_text("2")
    expect(import_count(page, "Invalid")).to_have_text("1")
    expect(page.locator("#import-problems")).to_contain_text("not a number")

    page.get_by_role("button", name="Import 2 new and 0 updated members").click()

    expect(page.get_by_role("heading", name="Imported", exact=True)).to_be_visible(timeout=20_000)
    page.get_by_role("link", name="See the members").click()
    rows = page.locator("#result_list tbody tr")
    expect(rows.filter(has_text="Lovelace")).to_contain_text("Ada")
    expect(rows.filter(has_text="Hopper")).to_contain_text("Grace")
    expect(rows.filter(has_text="Nobody")).to_have_count(0)


def test_an_app_of_its_own_runs_with_the_settings_it_was_given(
    page: Page, start_app: AppLauncher
) -> None:
    app = start_app(IMPORT_MAX_BYTES=2 * 1024 * 1024)
    app.create_staff("olu-admin", ADMIN, first_name="Olu")
    sign_in(page, app, "olu-admin")

    members_link(page).click()
    # A database of its own: none of the module's members are here.
    expect(page.locator("#changelist")).to_contain_text("0 members")
    page.get_by_role("link", name="Import CSV").click()
    expect(page.locator("#content-main")).to_contain_text("Up to 2 MB.")
