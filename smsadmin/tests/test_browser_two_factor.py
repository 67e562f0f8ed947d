"""Two-factor sign-in in Chromium: an Admin is sent to enrol, scans (reads) the QR code's
secret, confirms it with a code, sees the recovery codes and reaches the admin; the next
sign-in asks for a code. No Content-Security-Policy violation on the way."""

from __future__ import annotations

import re
import time
from base64 import b32decode

from django_otp.oath import TOTP
from playwright.sync_api import ConsoleMessage, Page, expect

from smsadmin.testing.browser import ADMIN, sign_in


def code_from(secret: str, steps_ahead: int = 0) -> str:
    """What an authenticator app holding ``secret`` (as the page shows it) displays."""
    totp = TOTP(b32decode(secret.replace(" ", "")))
    totp.time = time.time() + 30 * steps_ahead
    return f"{totp.token():06d}"


def test_an_admin_enrols_at_first_sign_in_and_then_signs_in_with_a_code(
    page: Page, start_app
) -> None:
    app = start_app(REQUIRE_2FA_FOR_ADMINS="true")
    app.create_staff("ada-admin", ADMIN)
    problems: list[str] = []

    def note(message: ConsoleMessage) -> None:
        text = message.text
        if "Content Security Policy" in text or "Content-Security-Policy" in text:
            problems.append(text)

    page.on("console", note)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    # Every script, stylesheet and page loads (the browser's own favicon.ico aside).
    page.on(
        "response",
        lambda response: (
            problems.append(f"{response.status} {response.url}")
            if response.status >= 400 and not response.url.endswith("/favicon.ico")
            else None
        ),
    )

    sign_in(page, app, "ada-admin")
    expect(page).to_have_url(re.compile(r"/admin/2fa/setup/$"))
    expect(page.locator("#two-factor-required")).to_be_visible()
    qr = page.locator("#two-factor-qr svg")
    expect(qr).to_be_visible()
    box = qr.bounding_box()
    assert box is not None and box["width"] >= 150 and box["height"] >= 150

    secret = page.locator("#two-factor-secret").inner_text()
    assert re.fullmatch(r"[A-Z2-7]{4}( [A-Z2-7]{4})+", secret)

    page.get_by_label("Code from the app").fill("000000")
    page.get_by_role("button", name="Turn on two-factor sign-in").click()
    expect(page.locator(".errorlist")).to_contain_text("That code is not right.")
    # django-otp makes the app wait a second after a wrong code.
    page.wait_for_timeout(1_100)

    page.get_by_label("Code from the app").fill(code_from(secret))
    page.get_by_role("button", name="Turn on two-factor sign-in").click()
    expect(page.locator("#two-factor-on")).to_contain_text("Two-factor sign-in is on.")
    codes = page.locator("#recovery-codes li")
    expect(codes).to_have_count(10)
    for text in codes.all_inner_texts():
        assert re.fullmatch(r"[a-z2-7]{4}-[a-z2-7]{4}", text)

    page.get_by_role("link", name="I have kept them: go on").click()
    expect(page).to_have_url(app.url_for("/admin/"))
    expect(page.locator("#content h1")).to_have_text("Contacts, events and blasts")

    # Signing in again: password, then the code page. Each code works once, so the
    # app's next code.
    page.context.clear_cookies()
    sign_in(page, app, "ada-admin")
    expect(page).to_have_url(app.url_for("/admin/2fa/verify/"))
    page.get_by_label("Code").fill(code_from(secret, steps_ahead=1))
    page.get_by_role("button", name="Verify").click()
    expect(page).to_have_url(app.url_for("/admin/"))
    expect(page.locator("#content h1")).to_have_text("Contacts, events and blasts")

    assert not problems, "\n".join(problems)
