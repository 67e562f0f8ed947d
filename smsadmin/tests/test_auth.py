"""Sign-in: lockout after failed passwords, the forced password change, cookies."""

import re
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import Group
from django.test import Client, override_settings

from members.models import Member
from smsadmin.models import User

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"
PASSWORD_CHANGE = "/admin/password_change/"
NEW_PASSWORD = "Violet-Lantern-Orbit-77"
WRONG = "not-the-password"


def login(client: Client, username: str, password: str, **extra):
    """POST the admin sign-in form as a browser would (extra: REMOTE_ADDR, headers)."""
    return client.post(LOGIN, {"username": username, "password": password}, **extra)


def is_signed_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


def fail(client: Client, username: str, times: int, **extra) -> list:
    return [login(client, username, WRONG, **extra) for _ in range(times)]


# --- Lockout ------------------------------------------------------------------------------


def test_four_bad_passwords_only_show_the_form_error(admin_user):
    client = Client()
    for response in fail(client, admin_user.username, 4):
        assert response.status_code == 200
        assert "Please enter the correct username and password" in response.content.decode()


def test_fifth_bad_password_locks_out_with_a_message(admin_user):
    client = Client()
    fail(client, admin_user.username, 4)
    response = login(client, admin_user.username, WRONG)
    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many failed sign-ins" in page
    assert "Try again in 15 minutes." in page
    assert admin_user.username in page


def test_correct_password_is_refused_while_locked_out(admin_user, staff_password):
    client = Client()
    fail(client, admin_user.username, 5)
    response = login(client, admin_user.username, staff_password)
    assert response.status_code == 429
    assert "Try again in 15 minutes." in response.content.decode()
    assert not is_signed_in(client)


def test_a_success_before_the_fifth_failure_resets_the_count(admin_user, staff_password):
    client = Client()
    fail(client, admin_user.username, 4)
    assert login(client, admin_user.username, staff_password).status_code == 302
    client.logout()

    responses = fail(client, admin_user.username, 4)
    assert [r.status_code for r in responses] == [200] * 4
    assert login(client, admin_user.username, staff_password).status_code == 302
    assert is_signed_in(client)


def test_lockout_is_for_that_ip_only(admin_user, staff_password):
    fail(Client(), admin_user.username, 5, REMOTE_ADDR="198.51.100.10")
    elsewhere = Client()
    response = login(elsewhere, admin_user.username, staff_password, REMOTE_ADDR="198.51.100.11")
    assert response.status_code == 302
    assert is_signed_in(elsewhere)


def test_lockout_is_for_that_username_only(admin_user, manager_user, staff_password):
    fail(Client(), admin_user.username, 5, REMOTE_ADDR="198.51.100.10")
    client = Client()
    response = login(client, manager_user.username, staff_password, REMOTE_ADDR="198.51.100.10")
    assert response.status_code == 302


def test_changing_browser_or_padding_the_username_does_not_dodge_the_lockout(
    admin_user, staff_password
):
    name = admin_user.username
    client = Client()
    for n, typed in enumerate([name, f" {name}", f"{name} ", f"{name}\t", name]):
        login(client, typed, WRONG, HTTP_USER_AGENT=f"Browser/{n}")
    response = login(client, admin_user.username, staff_password, HTTP_USER_AGENT="Other/1")
    assert response.status_code == 429


def test_lockout_page_escapes_the_typed_username(db):
    client = Client()
    responses = fail(client, "<b>mallory</b>", 5)
    page = responses[-1].content.decode()
    assert responses[-1].status_code == 429
    assert "<b>mallory</b>" not in page
    assert "&lt;b&gt;mallory&lt;/b&gt;" in page


def test_lockout_ends_after_fifteen_minutes(admin_user, staff_password):
    client = Client()
    fail(client, admin_user.username, 5)
    # Let the clock run: the failures happened 15 minutes and a bit ago.
    for attempt in AccessAttempt.objects.all():
        AccessAttempt.objects.filter(pk=attempt.pk).update(
            attempt_time=attempt.attempt_time - timedelta(minutes=15, seconds=5)
        )
    assert login(client, admin_user.username, staff_password).status_code == 302
    assert is_signed_in(client)


def test_lockout_still_holds_before_fifteen_minutes(admin_user, staff_password):
    client = Client()
    fail(client, admin_user.username, 5)
    for attempt in AccessAttempt.objects.all():
        AccessAttempt.objects.filter(pk=attempt.pk).update(
            attempt_time=attempt.attempt_time - timedelta(minutes=14)
        )
    assert login(client, admin_user.username, staff_password).status_code == 429


# --- Client IP behind a proxy ----------------------------------------------------------------

# What settings.py sets when TRUSTED_PROXY_COUNT=1 (nginx in front of the app).
BEHIND_ONE_PROXY = {"TRUSTED_PROXY_COUNT": 1}
NGINX = "10.0.0.2"


def test_forwarded_for_is_ignored_without_a_trusted_proxy(admin_user, staff_password):
    """Without TRUSTED_PROXY_COUNT a client cannot dodge the lockout by inventing headers."""
    client = Client()
    for n in range(5):
        response = login(
            client,
            admin_user.username,
            WRONG,
            REMOTE_ADDR="198.51.100.20",
            HTTP_X_FORWARDED_FOR=f"203.0.113.{n + 1}",
        )
    assert response.status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"198.51.100.20"}
    response = login(
        client,
        admin_user.username,
        staff_password,
        REMOTE_ADDR="198.51.100.20",
        HTTP_X_FORWARDED_FOR="203.0.113.99",
    )
    assert response.status_code == 429


@override_settings(**BEHIND_ONE_PROXY)
def test_behind_a_proxy_a_forged_forwarded_for_entry_is_not_believed(admin_user):
    """nginx appends the real address after whatever the client sent: that one counts."""
    client = Client()
    for n in range(5):
        response = login(
            client,
            admin_user.username,
            WRONG,
            REMOTE_ADDR=NGINX,
            HTTP_X_FORWARDED_FOR=f"203.0.113.{n + 1}, 198.51.100.30",
        )
    assert response.status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"198.51.100.30"}


@override_settings(**BEHIND_ONE_PROXY)
def test_behind_a_proxy_each_client_is_locked_out_on_its_own(admin_user, staff_password):
    """Clients that send no X-Forwarded-For: nginx writes just their address."""
    fail(
        Client(),
        admin_user.username,
        5,
        REMOTE_ADDR=NGINX,
        HTTP_X_FORWARDED_FOR="198.51.100.40",
    )
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"198.51.100.40"}
    response = login(
        Client(),
        admin_user.username,
        staff_password,
        REMOTE_ADDR=NGINX,
        HTTP_X_FORWARDED_FOR="198.51.100.41",
    )
    assert response.status_code == 302


# --- Forced password change ------------------------------------------------------------------


def add_user_through_admin(admin_client, username: str, password: str, group: str) -> User:
    response = admin_client.post(
        "/admin/smsadmin/user/add/",
        {
            "username": username,
            "usable_password": "true",
            "password1": password,
            "password2": password,
            "first_name": "New",
            "last_name": "Person",
            "email": f"{username}@example.org",
            "groups": [Group.objects.get(name=group).pk],
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    return User.objects.get(username=username)


def test_user_added_in_the_admin_must_change_password(admin_client):
    user = add_user_through_admin(admin_client, "newbie", "First-Given-Secret-5", "Social manager")
    assert user.must_change_password is True
    assert user.is_staff is True
    assert user.check_password("First-Given-Secret-5")
    assert [g.name for g in user.groups.all()] == ["Social manager"]


@pytest.fixture
def flagged(manager_user):
    manager_user.must_change_password = True
    manager_user.save()
    return manager_user


@pytest.fixture
def flagged_client(flagged, staff_password) -> Client:
    client = Client()
    response = login(client, flagged.username, staff_password)
    assert response.status_code == 302
    return client


def test_sign_in_with_the_flag_lands_on_the_password_page(flagged, staff_password):
    client = Client()
    response = client.post(
        LOGIN, {"username": flagged.username, "password": staff_password}, follow=True
    )
    assert response.redirect_chain[-1] == (PASSWORD_CHANGE, 302)
    assert "Before you go on, choose a new password of your own." in response.content.decode()


@pytest.mark.parametrize(
    "url",
    [
        "/admin/",
        "/admin/members/member/",
        "/admin/members/member/add/",
        "/admin/events/event/",
        "/admin/messaging/blast/",
        "/admin/suppression/unsubscribedcontact/",
        "/admin/login/",
        "/admin/smsadmin/user/",
    ],
)
def test_flagged_user_is_sent_to_the_password_page_from_any_page(flagged_client, url):
    response = flagged_client.get(url)
    assert response.status_code == 302
    assert response["Location"] == PASSWORD_CHANGE


def test_flagged_user_cannot_save_anything_before_changing(flagged_client):
    response = flagged_client.post(
        "/admin/members/member/add/", {"phone": "(201) 555-0142", "is_active": "on"}
    )
    assert response["Location"] == PASSWORD_CHANGE
    assert not Member.objects.exists()


def test_flagged_user_may_sign_out(flagged_client):
    response = flagged_client.post("/admin/logout/")
    assert response.status_code == 200
    assert flagged_client.get("/admin/")["Location"].startswith("/admin/login/")


def test_password_page_without_the_flag_has_no_forced_notice(admin_client):
    response = admin_client.get(PASSWORD_CHANGE)
    assert response.status_code == 200
    assert "Before you go on" not in response.content.decode()


def test_health_check_is_not_redirected_for_a_flagged_user(flagged_client):
    assert flagged_client.get("/healthz").status_code == 200


def test_new_password_must_differ_from_the_old(flagged_client, flagged, staff_password):
    response = flagged_client.post(
        PASSWORD_CHANGE,
        {
            "old_password": staff_password,
            "new_password1": staff_password,
            "new_password2": staff_password,
        },
    )
    assert response.status_code == 200
    assert "Choose a new password; this is the one you have now." in response.content.decode()
    flagged.refresh_from_db()
    assert flagged.must_change_password is True
    assert flagged_client.get("/admin/")["Location"] == PASSWORD_CHANGE


def test_changing_the_password_lifts_the_redirect(flagged_client, flagged, staff_password):
    response = flagged_client.post(
        PASSWORD_CHANGE,
        {
            "old_password": staff_password,
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
        follow=True,
    )
    assert response.redirect_chain == [("/admin/password_change/done/", 302)]
    assert "Your password was changed." in response.content.decode()
    flagged.refresh_from_db()
    assert flagged.must_change_password is False
    assert flagged.check_password(NEW_PASSWORD)
    # Still signed in, and free to go anywhere their role allows.
    assert flagged_client.get("/admin/").status_code == 200
    assert flagged_client.get("/admin/members/member/").status_code == 200

    fresh = Client()
    assert login(fresh, flagged.username, NEW_PASSWORD)["Location"] == "/admin/"
    assert is_signed_in(fresh)


def test_new_user_full_journey(admin_client):
    """Added by an Admin, signs in, is made to pick a password, then works normally."""
    user = add_user_through_admin(admin_client, "newbie", "First-Given-Secret-5", "Social manager")
    client = Client()
    login(client, "newbie", "First-Given-Secret-5")
    assert client.get("/admin/members/member/")["Location"] == PASSWORD_CHANGE
    client.post(
        PASSWORD_CHANGE,
        {
            "old_password": "First-Given-Secret-5",
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
    )
    assert client.get("/admin/members/member/").status_code == 200
    assert client.get("/admin/smsadmin/user/").status_code == 403
    user.refresh_from_db()
    assert user.must_change_password is False


def test_admin_resetting_another_users_password_sets_the_flag(admin_client, manager_user):
    response = admin_client.post(
        f"/admin/smsadmin/user/{manager_user.pk}/password/",
        {"usable_password": "true", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        follow=True,
    )
    assert response.status_code == 200
    assert "must choose a new password at next sign-in" in response.content.decode()
    manager_user.refresh_from_db()
    assert manager_user.must_change_password is True
    assert manager_user.check_password(NEW_PASSWORD)

    client = Client()
    login(client, manager_user.username, NEW_PASSWORD)
    assert client.get("/admin/")["Location"] == PASSWORD_CHANGE


def test_admin_setting_their_own_password_there_is_not_forced_to_change_it(
    admin_client, admin_user
):
    response = admin_client.post(
        f"/admin/smsadmin/user/{admin_user.pk}/password/",
        {"usable_password": "true", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    admin_user.refresh_from_db()
    assert admin_user.must_change_password is False
    assert admin_client.get("/admin/").status_code == 200


def test_a_rejected_password_reset_leaves_the_flag_alone(admin_client, manager_user):
    response = admin_client.post(
        f"/admin/smsadmin/user/{manager_user.pk}/password/",
        {"usable_password": "true", "password1": NEW_PASSWORD, "password2": "something-else-9"},
    )
    assert response.status_code == 200
    manager_user.refresh_from_db()
    assert manager_user.must_change_password is False


# --- Cookies -----------------------------------------------------------------------------------


def test_csrf_cookie_is_httponly_and_samesite_lax():
    response = Client().get("/admin/login/")
    cookie = response.cookies["csrftoken"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"


def test_session_cookie_is_httponly_and_samesite_lax(admin_user, staff_password):
    response = login(Client(), admin_user.username, staff_password)
    assert response.status_code == 302
    cookie = response.cookies["sessionid"]
    assert cookie.value
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"


def test_no_script_readable_token_in_the_login_page():
    """The token the forms need is in the page itself, since scripts cannot read the cookie."""
    page = Client().get("/admin/login/").content.decode()
    assert re.search(r'name="csrfmiddlewaretoken" value="[^"]+"', page)
