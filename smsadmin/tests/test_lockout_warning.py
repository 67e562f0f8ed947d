"""The sign-in page warns before the address lockout: after three failed passwords for a
user name from one address it says how many tries are left."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client, override_settings
from django_otp.plugins.otp_totp.models import TOTPDevice

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"
WRONG = "not-the-password"
ADDRESS = "198.51.100.7"


def attempt(username: str, password: str, address: str = ADDRESS):
    return Client().post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def fail(username: str, times: int, address: str = ADDRESS) -> list[str]:
    pages = []
    for _ in range(times):
        response = attempt(username, WRONG, address)
        assert response.status_code == 200
        pages.append(response.content.decode())
    return pages


def warning(page: str) -> str | None:
    marker = 'id="signin-tries-left">'
    if marker not in page:
        return None
    return " ".join(page.split(marker, 1)[1].split("</p>", 1)[0].split())


def test_warns_after_three_failures_and_locks_at_the_fifth(admin_user):
    pages = fail(admin_user.username, 4)
    assert [warning(page) for page in pages[:2]] == [None, None]
    assert "Please enter the correct username and password" in pages[0]
    assert warning(pages[2]) == (
        "2 tries left before sign-in from this address is locked for 15 minutes."
    )
    assert warning(pages[3]) == (
        "1 try left before sign-in from this address is locked for 15 minutes."
    )
    # Under the error, before the form.
    page = pages[3]
    assert (
        page.index("Please enter the correct")
        < page.index("1 try left")
        < page.index('id="login-form"')
    )
    locked = attempt(admin_user.username, WRONG)
    assert locked.status_code == 429
    assert "You are locked out after 5 failed sign-ins" in locked.content.decode()


def test_counts_the_pair_only(admin_user, manager_user):
    fail(admin_user.username, 3, address="198.51.100.8")
    # The same user name from another address, another user name from this one.
    assert warning(fail(admin_user.username, 1)[0]) is None
    assert warning(fail(manager_user.username, 1, address="198.51.100.8")[0]) is None


def test_a_successful_sign_in_resets_the_count(admin_user, staff_password):
    fail(admin_user.username, 4)
    response = attempt(admin_user.username, staff_password)
    assert response.status_code == 302
    assert not AccessAttempt.objects.filter(username=admin_user.username).exists()
    pages = fail(admin_user.username, 2)
    assert [warning(page) for page in pages] == [None, None]


@override_settings(AXES_ADDRESS_FAILURE_LIMIT=7, AXES_ADDRESS_COOLOFF=timedelta(minutes=30))
def test_the_words_follow_the_settings(admin_user):
    pages = fail(admin_user.username, 3)
    assert warning(pages[2]) == (
        "4 tries left before sign-in from this address is locked for 30 minutes."
    )


def test_the_password_page_of_a_two_factor_user_still_goes_to_the_code(admin_user, staff_password):
    TOTPDevice.objects.create(user=admin_user, name="app", confirmed=True)
    fail(admin_user.username, 3)
    response = attempt(admin_user.username, staff_password)
    assert response.status_code == 302
    assert response["Location"] == "/admin/2fa/verify/"


def test_the_sign_in_page_shows_no_warning_on_get(admin_user):
    fail(admin_user.username, 3)
    response = Client().get(LOGIN, REMOTE_ADDR=ADDRESS)
    assert response.status_code == 200
    assert warning(response.content.decode()) is None
