"""Two-factor sign-in: enrolment, the code after the password, recovery codes,
REQUIRE_2FA_FOR_ADMINS, and wrong codes counting toward django-axes's lockout."""

import re
import time
from base64 import b32decode

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from members.models import Member
from messaging.tests.processes import program_env, shell_json
from smsadmin import two_factor

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"
SETUP = "/admin/2fa/setup/"
VERIFY = "/admin/2fa/verify/"
OVERVIEW = "/admin/2fa/"
NEW_CODES = "/admin/2fa/recovery-codes/"
DISABLE = "/admin/2fa/disable/"
PASSWORD_CHANGE = "/admin/password_change/"
WRONG = "000000"


def code_for(device: TOTPDevice, steps_ahead: int = 0) -> str:
    """The code the user's app shows (``steps_ahead`` 30-second steps from now: the device
    takes the next step's code too, and each step's code only once)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + steps_ahead * device.step
    return f"{totp.token():0{device.digits}d}"


def enrol(user) -> tuple[TOTPDevice, list[str]]:
    """A confirmed authenticator and recovery codes, as enrolment leaves them."""
    device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    return device, two_factor.make_recovery_codes(user)


def login(client: Client, username: str, password: str, url: str = LOGIN, **extra):
    return client.post(url, {"username": username, "password": password}, **extra)


def is_signed_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


def send_code(client: Client, code: str, url: str = VERIFY, **extra):
    return client.post(url, {"code": code}, **extra)


@pytest.fixture
def require_2fa(settings):
    settings.REQUIRE_2FA_FOR_ADMINS = True


@pytest.fixture
def no_throttle(settings):
    """django-otp makes a device wait 1, 2, 4... seconds after each wrong code; tests that
    type several codes in a row turn the wait off (the throttle has a test of its own)."""
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    settings.OTP_STATIC_THROTTLE_FACTOR = 0


# --- Enrolment -------------------------------------------------------------------------------


def test_enrolment_page_shows_a_qr_code_and_the_secret(admin_client, admin_user):
    response = admin_client.get(SETUP)
    assert response.status_code == 200
    page = response.content.decode()
    device = TOTPDevice.objects.get(user=admin_user)
    assert device.confirmed is False
    assert re.search(r'<div id="two-factor-qr"[^>]*><svg [^>]*viewBox=', page)
    assert "<script" not in page.split('id="two-factor-qr"', 1)[1].split("</div>", 1)[0]
    secret = re.search(r'<code id="two-factor-secret"[^>]*>([A-Z2-7 ]+)</code>', page)[1]
    assert b32decode(secret.replace(" ", "")) == device.bin_key
    # A reload shows the same secret: the app may already hold it.
    assert secret in admin_client.get(SETUP).content.decode()
    assert TOTPDevice.objects.filter(user=admin_user).count() == 1


def test_a_wrong_code_is_refused_and_the_app_stays_unconfirmed(admin_client, admin_user):
    admin_client.get(SETUP)
    response = send_code(admin_client, WRONG, url=SETUP)
    assert response.status_code == 200
    assert "That code is not right." in response.content.decode()
    assert not TOTPDevice.objects.filter(user=admin_user, confirmed=True).exists()
    assert not StaticDevice.objects.filter(user=admin_user).exists()
    # Not a failed sign-in: the user proved nothing wrong about an existing factor.
    assert not AccessAttempt.objects.exists()


def test_the_right_code_confirms_and_shows_the_recovery_codes_once(admin_client, admin_user):
    admin_client.get(SETUP)
    device = TOTPDevice.objects.get(user=admin_user)
    response = send_code(admin_client, code_for(device), url=SETUP)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Two-factor sign-in is on." in page
    shown = re.findall(r"<li>([a-z2-7]{4}-[a-z2-7]{4})</li>", page)
    assert len(shown) == 10
    stored = set(
        StaticToken.objects.filter(device__user=admin_user).values_list("token", flat=True)
    )
    assert {code.replace("-", "") for code in shown} == stored
    device.refresh_from_db()
    assert device.confirmed is True

    # This session gave the code: it goes on into the admin.
    assert is_signed_in(admin_client)
    # Never shown again.
    for url in (OVERVIEW, SETUP):
        later = admin_client.get(url).content.decode()
        assert not any(code in later for code in shown)
    assert "You have 10 unused recovery codes." in admin_client.get(OVERVIEW).content.decode()


def test_replacing_the_app_needs_a_current_code(no_throttle, manager_user, staff_password):
    old, _ = enrol(manager_user)
    client = Client()
    login(client, manager_user.username, staff_password)
    send_code(client, code_for(old))
    page = client.get(SETUP).content.decode()
    assert "Code from your current authenticator" in page
    new = TOTPDevice.objects.get(user=manager_user, confirmed=False)

    response = client.post(SETUP, {"current": WRONG, "code": code_for(new)})
    assert "That code is not right." in response.content.decode()
    assert AccessAttempt.objects.get().failures_since_start == 1
    assert set(TOTPDevice.objects.filter(confirmed=True)) == {old}

    response = client.post(SETUP, {"current": code_for(old, 1), "code": code_for(new)})
    assert response.status_code == 200
    assert len(re.findall(r"<li>[a-z2-7]{4}-[a-z2-7]{4}</li>", response.content.decode())) == 10
    assert list(TOTPDevice.objects.filter(user=manager_user)) == [new]
    assert is_signed_in(client)


# --- Sign-in ---------------------------------------------------------------------------------


def test_sign_in_asks_for_the_code_after_the_password(admin_user, staff_password):
    device, _ = enrol(admin_user)
    client = Client()
    response = login(client, admin_user.username, staff_password)
    assert response.status_code == 302
    assert response["Location"] == VERIFY
    # Not signed in yet: the admin sends the session back to the code page.
    assert "_auth_user_id" not in client.session
    for url in ("/admin/", "/admin/members/member/", "/compose/"):
        assert client.get(url)["Location"] == VERIFY, url
    page = client.get(VERIFY).content.decode()
    assert admin_user.username in page
    assert 'autocomplete="one-time-code"' in page

    response = send_code(client, code_for(device))
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    assert is_signed_in(client)
    assert client.get("/compose/").status_code == 200


def test_the_code_page_keeps_where_the_user_was_going(admin_user, staff_password):
    device, _ = enrol(admin_user)
    client = Client()
    login(client, admin_user.username, staff_password, url="/admin/login/?next=/compose/")
    assert send_code(client, code_for(device))["Location"] == "/compose/"


def test_an_unsafe_next_is_not_followed(admin_user, staff_password):
    device, _ = enrol(admin_user)
    client = Client()
    login(
        client,
        admin_user.username,
        staff_password,
        url="/admin/login/?next=https://evil.example.com/",
    )
    assert send_code(client, code_for(device))["Location"] == "/admin/"


def test_a_session_of_a_user_with_an_app_and_no_code_cannot_use_the_admin(admin_user):
    """Say the app was set up in another session: this one has not given a code."""
    device, _ = enrol(admin_user)
    client = Client()
    client.force_login(admin_user)
    response = client.get("/admin/members/member/")
    assert response["Location"] == f"{VERIFY}?next=/admin/members/member/"
    assert client.get("/admin/2fa/setup/")["Location"].startswith(VERIFY)

    response = send_code(client, code_for(device), url=f"{VERIFY}?next=/admin/members/member/")
    assert response["Location"] == "/admin/members/member/"
    assert client.get("/admin/members/member/").status_code == 200


def test_the_admin_site_itself_needs_the_code(admin_user, rf):
    """has_permission, behind the middleware: for views that do not go through it."""
    from django.contrib import admin

    enrol(admin_user)
    request = rf.get("/admin/")
    request.user = admin_user
    admin_user.is_verified = lambda: False
    assert not admin.site.has_permission(request)
    request = rf.get("/admin/")
    request.user = admin_user
    admin_user.is_verified = lambda: True
    assert admin.site.has_permission(request)


def test_an_unverified_session_may_sign_out(admin_user):
    enrol(admin_user)
    client = Client()
    client.force_login(admin_user)
    assert client.post("/admin/logout/").status_code == 200
    assert client.get("/admin/")["Location"].startswith("/admin/login/")


def test_cancel_on_the_code_page_starts_again(admin_user, staff_password):
    enrol(admin_user)
    client = Client()
    login(client, admin_user.username, staff_password)
    response = client.post(VERIFY, {"cancel": "1"})
    assert response["Location"] == "/admin/login/"
    assert client.get("/admin/")["Location"].startswith("/admin/login/")


def test_the_code_page_gives_up_after_ten_minutes(admin_user, staff_password):
    device, _ = enrol(admin_user)
    client = Client()
    login(client, admin_user.username, staff_password)
    session = client.session
    session[two_factor.PENDING_SESSION_KEY]["at"] -= two_factor.PENDING_SECONDS + 1
    session.save()
    response = send_code(client, code_for(device))
    assert response["Location"].startswith("/admin/login/")
    assert not is_signed_in(client)


def test_a_password_change_elsewhere_ends_a_waiting_sign_in(admin_user, staff_password):
    device, _ = enrol(admin_user)
    client = Client()
    login(client, admin_user.username, staff_password)
    admin_user.set_password("Another-Long-Secret-88")
    admin_user.save()
    assert send_code(client, code_for(device))["Location"].startswith("/admin/login/")
    assert not is_signed_in(client)


def test_a_user_without_an_app_signs_in_with_the_password_alone(manager_user, staff_password):
    client = Client()
    assert login(client, manager_user.username, staff_password)["Location"] == "/admin/"
    assert is_signed_in(client)


# --- Recovery codes --------------------------------------------------------------------------


def test_a_recovery_code_signs_in_once(manager_user, staff_password):
    _, codes = enrol(manager_user)
    client = Client()
    login(client, manager_user.username, staff_password)
    # As shown: with a dash, and typed in capitals.
    response = send_code(client, f"{codes[0][:4]}-{codes[0][4:]}".upper(), follow=True)
    assert response.redirect_chain[-1] == ("/admin/", 302)
    assert "You signed in with a recovery code; it is used up (9 left)." in (
        response.content.decode()
    )
    assert StaticToken.objects.filter(device__user=manager_user).count() == 9

    client.post("/admin/logout/")
    again = Client()
    login(again, manager_user.username, staff_password)
    response = send_code(again, codes[0])
    assert response.status_code == 200
    assert "That code is not right." in response.content.decode()
    assert not is_signed_in(again)


def test_new_recovery_codes_need_a_current_code_and_replace_the_old(
    no_throttle, manager_user, staff_password
):
    device, old_codes = enrol(manager_user)
    client = Client()
    login(client, manager_user.username, staff_password)
    send_code(client, code_for(device))

    response = send_code(client, WRONG, url=NEW_CODES)
    assert "That code is not right." in response.content.decode()
    assert StaticToken.objects.filter(device__user=manager_user).count() == 10

    response = send_code(client, code_for(device, 1), url=NEW_CODES)
    new_codes = re.findall(r"<li>([a-z2-7]{4}-[a-z2-7]{4})</li>", response.content.decode())
    assert len(new_codes) == 10
    stored = set(
        StaticToken.objects.filter(device__user=manager_user).values_list("token", flat=True)
    )
    assert stored == {code.replace("-", "") for code in new_codes}
    assert not stored & set(old_codes)


# --- Turning it off --------------------------------------------------------------------------


def test_turning_it_off_needs_a_current_code(no_throttle, manager_user, staff_password):
    device, _ = enrol(manager_user)
    client = Client()
    login(client, manager_user.username, staff_password)
    send_code(client, code_for(device))

    response = send_code(client, WRONG, url=DISABLE)
    assert "That code is not right." in response.content.decode()
    assert TOTPDevice.objects.filter(user=manager_user).exists()

    response = send_code(client, code_for(device, 1), url=DISABLE, follow=True)
    assert "Two-factor sign-in is off" in response.content.decode()
    assert not TOTPDevice.objects.filter(user=manager_user).exists()
    assert not StaticDevice.objects.filter(user=manager_user).exists()
    assert is_signed_in(client)
    client.post("/admin/logout/")
    assert login(Client(), manager_user.username, staff_password)["Location"] == "/admin/"


def test_an_admin_who_must_keep_it_can_only_replace_it(require_2fa, admin_user, staff_password):
    device, _ = enrol(admin_user)
    client = Client()
    login(client, admin_user.username, staff_password)
    send_code(client, code_for(device))
    assert "Admins keep two-factor sign-in on" in client.get(OVERVIEW).content.decode()
    response = send_code(client, code_for(device, 1), url=DISABLE)
    assert response.status_code == 403
    assert "Admins must keep two-factor sign-in on." in response.content.decode()
    assert TOTPDevice.objects.filter(user=admin_user, confirmed=True).exists()


# --- REQUIRE_2FA_FOR_ADMINS ------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["/admin/", "/compose/", "/admin/members/member/", "/admin/smsadmin/user/", OVERVIEW]
)
def test_an_admin_without_an_app_is_sent_to_enrol(require_2fa, admin_client, url):
    assert admin_client.get(url)["Location"] == SETUP


def test_an_admin_sent_to_enrol_cannot_save_anything_first(require_2fa, admin_client):
    response = admin_client.post(
        "/admin/members/member/add/", {"phone": "(201) 555-0142", "is_active": "on"}
    )
    assert response["Location"] == SETUP
    assert not Member.objects.exists()


def test_a_superuser_without_an_app_is_sent_to_enrol(require_2fa, admin_user):
    admin_user.groups.clear()
    admin_user.is_superuser = True
    admin_user.save()
    client = Client()
    client.force_login(admin_user)
    assert client.get("/admin/")["Location"] == SETUP


def test_an_admin_sent_to_enrol_may_still_sign_out_and_reach_health(require_2fa, admin_client):
    assert admin_client.get("/healthz").status_code == 200
    assert admin_client.post("/admin/logout/").status_code == 200


def test_the_enrolment_page_says_it_is_required(require_2fa, admin_client):
    assert "Admins must set up two-factor sign-in" in admin_client.get(SETUP).content.decode()


def test_an_admin_who_enrols_goes_on_into_the_admin(require_2fa, admin_client, admin_user):
    admin_client.get(SETUP)
    device = TOTPDevice.objects.get(user=admin_user)
    assert send_code(admin_client, code_for(device), url=SETUP).status_code == 200
    assert is_signed_in(admin_client)
    assert admin_client.get("/compose/").status_code == 200


def test_a_social_manager_without_an_app_is_not_forced(require_2fa, manager_client):
    assert manager_client.get("/admin/").status_code == 200
    assert manager_client.get("/compose/").status_code == 200
    assert "Two-factor sign-in is off" in manager_client.get(OVERVIEW).content.decode()


def test_without_the_setting_an_admin_may_go_on_without_an_app(admin_client):
    assert is_signed_in(admin_client)


def test_password_change_comes_first_then_enrolment(require_2fa, admin_user, staff_password):
    admin_user.must_change_password = True
    admin_user.save()
    client = Client()
    login(client, admin_user.username, staff_password)
    assert client.get("/admin/")["Location"] == PASSWORD_CHANGE
    assert client.get(SETUP)["Location"] == PASSWORD_CHANGE
    new_password = "Violet-Lantern-Orbit-77"
    response = client.post(
        PASSWORD_CHANGE,
        {
            "old_password": staff_password,
            "new_password1": new_password,
            "new_password2": new_password,
        },
    )
    assert response["Location"] == "/admin/password_change/done/"
    assert client.get("/admin/")["Location"] == SETUP
    assert client.get(SETUP).status_code == 200


def test_the_setting_is_on_by_default_in_production(tmp_path):
    env = program_env(tmp_path, DEBUG="false", REQUIRE_2FA_FOR_ADMINS=None)
    shown = shell_json(
        "from django.conf import settings as s\nemit(s.REQUIRE_2FA_FOR_ADMINS)",
        env=env,
        log_dir=tmp_path,
    )
    assert shown is True
    env = program_env(tmp_path, DEBUG="true", REQUIRE_2FA_FOR_ADMINS=None)
    shown = shell_json(
        "from django.conf import settings as s\nemit(s.REQUIRE_2FA_FOR_ADMINS)",
        env=env,
        log_dir=tmp_path,
    )
    assert shown is False


# --- Wrong codes and the lockout -------------------------------------------------------------


def test_wrong_codes_count_toward_the_lockout(no_throttle, admin_user, staff_password):
    device, _ = enrol(admin_user)
    client = Client()
    login(client, admin_user.username, staff_password)
    # Another browser from the same address, its password given before the lockout.
    other = Client()
    login(other, admin_user.username, staff_password)

    for _ in range(4):
        response = send_code(client, WRONG)
        assert response.status_code == 200
        assert "That code is not right." in response.content.decode()
    attempt = AccessAttempt.objects.get()
    assert attempt.username == admin_user.username
    assert attempt.failures_since_start == 4

    response = send_code(client, WRONG)
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.content.decode()

    # Locked out even with the right code, and the password is refused too.
    response = send_code(other, code_for(device))
    assert response.status_code == 429
    assert not is_signed_in(other)
    assert login(Client(), admin_user.username, staff_password).status_code == 429


def test_a_right_password_does_not_wipe_out_the_wrong_codes(
    no_throttle, admin_user, staff_password
):
    """django-axes forgets failures at sign-in; the password alone is not a sign-in."""
    enrol(admin_user)
    client = Client()
    login(client, admin_user.username, staff_password)
    for _ in range(4):
        send_code(client, WRONG)
    client.post(VERIFY, {"cancel": "1"})
    assert login(client, admin_user.username, staff_password)["Location"] == VERIFY
    assert send_code(client, WRONG).status_code == 429


def test_the_right_code_resets_the_count(no_throttle, admin_user, staff_password):
    device, _ = enrol(admin_user)
    client = Client()
    login(client, admin_user.username, staff_password)
    for _ in range(4):
        send_code(client, WRONG)
    assert send_code(client, code_for(device))["Location"] == "/admin/"
    assert not AccessAttempt.objects.exists()


def test_wrong_current_codes_count_toward_the_lockout_too(
    no_throttle, manager_user, staff_password
):
    device, _ = enrol(manager_user)
    client = Client()
    login(client, manager_user.username, staff_password)
    send_code(client, code_for(device))
    for _ in range(4):
        assert send_code(client, WRONG, url=DISABLE).status_code == 200
    response = send_code(client, WRONG, url=DISABLE)
    assert response.status_code == 429
    # Whoever guessed in this session is signed out.
    assert client.get("/admin/")["Location"].startswith("/admin/login/")
    assert TOTPDevice.objects.filter(user=manager_user).exists()


def test_a_code_typed_during_the_throttle_wait_is_not_checked(admin_user, staff_password):
    device, _ = enrol(admin_user)
    client = Client()
    login(client, admin_user.username, staff_password)
    send_code(client, WRONG)
    response = send_code(client, code_for(device))
    assert response.status_code == 200
    assert "Too many wrong codes in a row: wait" in response.content.decode()
    assert AccessAttempt.objects.get().failures_since_start == 1
    assert not is_signed_in(client)


# --- The admin's device pages ----------------------------------------------------------------


def test_the_admin_does_not_show_anyones_secret(admin_client, manager_user):
    device, codes = enrol(manager_user)
    static = StaticDevice.objects.get(user=manager_user)
    page = admin_client.get(f"/admin/otp_totp/totpdevice/{device.pk}/change/").content.decode()
    assert device.key not in page
    page = admin_client.get(f"/admin/otp_static/staticdevice/{static.pk}/change/").content.decode()
    assert not any(code in page for code in codes)


def test_the_secret_is_random_per_user(admin_client, manager_client, admin_user, manager_user):
    admin_client.get(SETUP)
    manager_client.get(SETUP)
    keys = set(TOTPDevice.objects.values_list("key", flat=True))
    assert len(keys) == 2
    assert all(len(bytes.fromhex(key)) == 20 for key in keys)
