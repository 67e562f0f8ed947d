"""Sign-in lockout across addresses (security review 2): a per-account limit beside the
per-address one, the page that says which, and the Admins' "Unlock"."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib import admin
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"
WRONG = "not-the-password"


def login(username: str, password: str, address: str, **extra):
    client = Client()
    response = client.post(
        LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address, **extra
    )
    return client, response


def spray(username: str, count: int, **extra) -> list:
    """One wrong password from each of ``count`` addresses, as a botnet would."""
    return [login(username, WRONG, f"203.0.113.{n + 1}", **extra)[1] for n in range(count)]


def signs_in(username: str, password: str, address: str) -> bool:
    client, response = login(username, password, address)
    return response.status_code == 302 and client.get("/admin/").status_code == 200


def test_five_failures_from_one_address_lock_that_pair_only(admin_user, staff_password):
    for _ in range(5):
        response = login(admin_user.username, WRONG, "198.51.100.1")[1]
    assert response.status_code == 429
    page = response.content.decode()
    assert "from this address" in page
    assert "this account" not in page
    assert "Try again in 15 minutes." in page
    assert login(admin_user.username, staff_password, "198.51.100.1")[1].status_code == 429
    assert signs_in(admin_user.username, staff_password, "198.51.100.2")


def test_nineteen_failures_from_as_many_addresses_do_not_lock(admin_user, staff_password):
    responses = spray(admin_user.username, 19)
    assert {r.status_code for r in responses} == {200}
    assert signs_in(admin_user.username, staff_password, "198.51.100.9")


def test_twenty_failures_from_twenty_addresses_lock_the_account_everywhere(
    admin_user, manager_user, staff_password
):
    responses = spray(admin_user.username, 20)
    assert [r.status_code for r in responses[:19]] == [200] * 19
    assert responses[-1].status_code == 429
    # Even with the right password, from an address never seen and from one that failed.
    for address in ("198.51.100.77", "203.0.113.3"):
        client, response = login(admin_user.username, staff_password, address)
        assert response.status_code == 429
        assert client.get("/admin/").status_code == 302
    page = response.content.decode()
    assert "Sign-in to this account" in page
    assert "from any address" in page
    assert "from this address" not in page
    assert "Try again in 60 minutes" in page
    assert "Unlock sign-in" in page
    # Refused attempts are not counted: the lock does not grow.
    assert sum(AccessAttempt.objects.values_list("failures_since_start", flat=True)) == 20
    # Another account is unaffected, from the same addresses.
    assert signs_in(manager_user.username, staff_password, "203.0.113.3")


def test_the_account_lock_ends_when_its_failures_are_an_hour_old(admin_user, staff_password):
    spray(admin_user.username, 20)
    for attempt in AccessAttempt.objects.all():
        AccessAttempt.objects.filter(pk=attempt.pk).update(
            attempt_time=attempt.attempt_time - timedelta(minutes=59)
        )
    response = login(admin_user.username, staff_password, "198.51.100.5")[1]
    assert response.status_code == 429
    assert "Try again in 1 minute " in response.content.decode()
    for attempt in AccessAttempt.objects.all():
        AccessAttempt.objects.filter(pk=attempt.pk).update(
            attempt_time=attempt.attempt_time - timedelta(minutes=1, seconds=5)
        )
    assert signs_in(admin_user.username, staff_password, "198.51.100.5")


@override_settings(TRUSTED_PROXY_COUNT=1)
def test_behind_nginx_the_addresses_are_the_forwarded_ones(admin_user, staff_password):
    """nginx is every request's REMOTE_ADDR; it writes the client's into X-Forwarded-For."""
    for n in range(20):
        login(admin_user.username, WRONG, "10.0.0.2", HTTP_X_FORWARDED_FOR=f"203.0.113.{n + 1}")
    assert AccessAttempt.objects.values("ip_address").distinct().count() == 20
    response = login(
        admin_user.username, staff_password, "10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.8"
    )[1]
    assert response.status_code == 429
    assert "Sign-in to this account" in response.content.decode()


@override_settings(AXES_ACCOUNT_FAILURE_LIMIT=8)
def test_the_account_limit_is_a_setting(admin_user):
    responses = spray(admin_user.username, 8)
    assert [r.status_code for r in responses] == [200] * 7 + [429]


# --- Unlocking -------------------------------------------------------------------------------


def test_signin_unlock_resets_both_counts(admin_user, manager_user, staff_password):
    from smsadmin.auth import signin_unlock

    for _ in range(5):
        login(manager_user.username, WRONG, "198.51.100.1")
    spray(admin_user.username, 20)
    assert signin_unlock(usernames=[admin_user.username, manager_user.username]) == 2
    assert not AccessAttempt.objects.exists()
    assert signs_in(admin_user.username, staff_password, "203.0.113.1")
    assert signs_in(manager_user.username, staff_password, "198.51.100.1")


def test_lockouts_are_listed_in_plain_words_under_users_and_sign_in(admin_client, admin_user):
    spray(admin_user.username, 20)
    index = admin_client.get("/admin/").content.decode()
    assert "Sign-in lockouts" in index
    assert "Access attempts" not in index
    assert "Axes" not in index
    page = admin_client.get("/admin/axes/accessattempt/").content.decode()
    assert "Sign-in lockouts" in page
    assert "Account locked, from every address" in page
    assert '<option value="unlock">Unlock</option>' in page


def test_unlock_action_lets_the_user_sign_in_again(admin_client, manager_user, staff_password):
    spray(manager_user.username, 20)
    assert not signs_in(manager_user.username, staff_password, "198.51.100.50")
    # One row of the twenty is enough: the action unlocks the user name.
    ids = [AccessAttempt.objects.filter(username=manager_user.username).first().pk]
    response = admin_client.post(
        "/admin/axes/accessattempt/",
        {"action": "unlock", "_selected_action": ids},
        follow=True,
    )
    assert response.status_code == 200
    assert f"Sign-in unlocked for {manager_user.username}" in response.content.decode()
    assert not AccessAttempt.objects.exists()
    assert signs_in(manager_user.username, staff_password, "198.51.100.50")


def test_unlock_sign_in_on_the_user_list(admin_client, manager_user, staff_password):
    spray(manager_user.username, 20)
    response = admin_client.post(
        "/admin/smsadmin/user/",
        {"action": "unlock_sign_in", "_selected_action": [manager_user.pk]},
        follow=True,
    )
    assert "Sign-in unlocked for" in response.content.decode()
    assert signs_in(manager_user.username, staff_password, "198.51.100.50")


def test_a_social_manager_cannot_unlock(manager_client, admin_user, staff_password):
    spray(admin_user.username, 20)
    ids = list(AccessAttempt.objects.values_list("pk", flat=True))
    assert manager_client.get("/admin/axes/accessattempt/").status_code == 403
    response = manager_client.post(
        "/admin/axes/accessattempt/", {"action": "unlock", "_selected_action": ids}
    )
    assert response.status_code == 403
    response = manager_client.post(
        "/admin/smsadmin/user/", {"action": "unlock_sign_in", "_selected_action": [admin_user.pk]}
    )
    assert response.status_code == 403
    assert AccessAttempt.objects.count() == 20
    assert login(admin_user.username, staff_password, "198.51.100.50")[1].status_code == 429


def test_the_admin_registers_axes_models_only_through_smsadmin():
    from smsadmin.admin import SigninLockoutAdmin

    assert isinstance(admin.site._registry[AccessAttempt], SigninLockoutAdmin)
