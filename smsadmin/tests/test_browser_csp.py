"""Under the Content-Security-Policy the pages still work in Chromium, with no CSP
violation in the console: the admin, the CSV import, compose (its live panel), and a
blast's page (its live progress)."""

from __future__ import annotations

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from smsadmin.testing.browser import ADMIN, LiveApp, sign_in


@pytest.fixture
def violations(page: Page) -> list[str]:
    seen: list[str] = []

    def note(message: ConsoleMessage) -> None:
        text = message.text
        if "Content Security Policy" in text or "Content-Security-Policy" in text:
            seen.append(text)

    page.on("console", note)
    page.on("pageerror", lambda error: seen.append(f"page error: {error}"))
    return seen


def test_admin_import_compose_and_blast_pages_work_under_the_csp(
    page: Page, live_app: LiveApp, violations: list[str]
) -> None:
    live_app.create_staff("cara-csp", ADMIN, first_name="Cara")
    live_app.shell(
        "from members.models import Member\n"
        "for i in range(3):\n"
        "    Member.objects.create(first_name=f'Csp{i}', last_name='Test', "
        "phone=f'+1201555{7300 + i}')\n"
        "emit(Member.objects.count())"
    )
    sign_in(page, live_app, "cara-csp")

    response = page.goto(live_app.url_for("/admin/"))
    assert response is not None
    assert "default-src 'self'" in (response.headers.get("content-security-policy") or "")
    expect(page.locator("#user-tools")).to_contain_text("Welcome, Cara.")

    # The member list's action menu and filters are the admin's own scripts.
    page.goto(live_app.url_for("/admin/members/member/"))
    expect(page.get_by_text("Csp0")).to_be_visible()
    page.locator("#action-toggle").check()
    expect(page.locator(".action-counter")).to_contain_text("selected")

    page.goto(live_app.url_for("/admin/members/member/import/"))
    expect(page.locator("input[type=file]")).to_be_visible()

    # Compose: the live panel is fetched by a static script as one types.
    page.goto(live_app.url_for("/compose/?community=1"))
    page.get_by_label("Message").fill("Hi {first_name} 😀 Reply STOP to opt out.")
    expect(page.locator("[data-testid=encoding]")).to_have_text("UCS-2")
    page.get_by_role("button", name="Review and confirm").click()
    page.get_by_role("button", name="Confirm and send to").click()

    # The blast page polls its progress with a static script until it is finished.
    expect(page.locator("#blast-status")).to_have_text("Sent", timeout=30_000)

    assert violations == []
