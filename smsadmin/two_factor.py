"""Two-factor sign-in with django-otp: an authenticator app (TOTP) and one-time recovery codes.

- **Sign-in.** The admin's password form (TwoFactorAdminSite.login) signs in a user who has
  no authenticator as before. A user who has one is not signed in yet: the session keeps who
  gave the right password for PENDING_SECONDS, and the code page (``verify``) asks for a
  code from the app or a recovery code (used up). Only then does Django's ``login`` run,
  with the device, so the session is verified (``django_otp.login``,
  ``request.user.is_verified()``). Since django-axes resets a user's failures at sign-in
  (AXES_RESET_ON_SUCCESS), that reset comes only with both factors: a right password does
  not wipe out the wrong codes typed before it.
- **Wrong codes** at sign-in, and wrong current codes when changing the second factor, are
  failed sign-ins for django-axes (``user_login_failed`` with the user name and the
  request): they count toward the same lockout as wrong passwords, and nothing is checked
  while it holds. django-otp's own throttling adds a wait (1, 2, 4... seconds) after each
  wrong code of a device; a code typed during that wait is not checked and not counted.
- **The admin** (TwoFactorAdminSite.has_permission) needs a verified session from a user who
  has an authenticator; TwoFactorMiddleware (smsadmin.middleware) sends such a session to
  the code page from every page, and with REQUIRE_2FA_FOR_ADMINS an Admin without an
  authenticator to enrolment.
- **Enrolment** (``setup``): an unconfirmed TOTPDevice, shown as a QR code (inline SVG, no
  script) and its secret in text; the right code from the app confirms it, replaces any
  earlier authenticator and makes RECOVERY_CODES new recovery codes (a StaticDevice), shown
  once. Replacing an authenticator, making new recovery codes and turning two-factor sign-in
  off each need a current code, so a stolen session cannot make itself a second factor.
"""

from __future__ import annotations

import re
import time
from base64 import b32encode
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import django_otp
import qrcode
import qrcode.image.svg
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_credentials, get_lockout_response
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import REDIRECT_FIELD_NAME, get_user_model
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.signals import user_login_failed
from django.contrib.auth.views import LoginView, redirect_to_login
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from smsadmin.roles import ADMIN

# How long a right password waits for its code before the sign-in starts again.
PENDING_SECONDS = 10 * 60
PENDING_SESSION_KEY = "two_factor_pending"
STATE_SESSION_KEY = "two_factor_state"
RECHECK_SECONDS = 60
RECOVERY_CODES = 10
APP_NAME = "Authenticator app"
RECOVERY_NAME = "Recovery codes"


# --- Who needs what ----------------------------------------------------------------------


def is_admin(user: Any) -> bool:
    return bool(
        user.is_authenticated and (user.is_superuser or user.groups.filter(name=ADMIN).exists())
    )


def must_keep_two_factor(user: Any) -> bool:
    """An Admin under REQUIRE_2FA_FOR_ADMINS: may replace the authenticator, not remove it."""
    return bool(settings.REQUIRE_2FA_FOR_ADMINS) and is_admin(user)


def is_verified(user: Any) -> bool:
    verified = getattr(user, "is_verified", None)
    return bool(verified and verified())


def authenticator(user: Any) -> TOTPDevice | None:
    """The user's confirmed authenticator app, if they have one."""
    if not user.is_authenticated:
        return None
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("-pk").first()


@dataclass(frozen=True)
class State:
    has_app: bool  # the user has a confirmed authenticator
    must_enrol: bool  # ... has none, and REQUIRE_2FA_FOR_ADMINS asks an Admin for one


def state(request: HttpRequest) -> State:
    """The signed-in user's two-factor state, once per request.

    A verified session needs no look-up. Otherwise the session remembers the answer for
    RECHECK_SECONDS, so most pages ask the database nothing: an authenticator set up or
    removed in another session (or by an Admin) counts here within that time.
    """
    cached = getattr(request, "_two_factor_state", None)
    if cached is not None:
        return cached
    user = request.user
    session = getattr(request, "session", None)
    if not user.is_authenticated:
        found = State(has_app=False, must_enrol=False)
    elif is_verified(user):
        found = State(has_app=True, must_enrol=False)
    else:
        saved = session.get(STATE_SESSION_KEY) if session is not None else None
        if (
            isinstance(saved, dict)
            and saved.get("user") == user.pk
            and 0 <= time.time() - saved.get("at", 0) < RECHECK_SECONDS
        ):
            found = State(has_app=saved["has_app"], must_enrol=saved["must_enrol"])
        else:
            has_app = TOTPDevice.objects.filter(user=user, confirmed=True).exists()
            found = State(has_app=has_app, must_enrol=not has_app and must_keep_two_factor(user))
            if session is not None:
                session[STATE_SESSION_KEY] = {
                    "user": user.pk,
                    "has_app": found.has_app,
                    "must_enrol": found.must_enrol,
                    "at": int(time.time()),
                }
    request._two_factor_state = found  # type: ignore[attr-defined]
    return found


def forget_state(request: HttpRequest) -> None:
    """After this session changed the user's authenticator: look again on the next page."""
    request.session.pop(STATE_SESSION_KEY, None)
    request.__dict__.pop("_two_factor_state", None)


def needs_code(request: HttpRequest) -> bool:
    """A signed-in user with an authenticator whose session has not given a code."""
    return (
        request.user.is_authenticated and not is_verified(request.user) and state(request).has_app
    )


def needs_enrolment(request: HttpRequest) -> bool:
    return request.user.is_authenticated and state(request).must_enrol


def redirect_for(request: HttpRequest) -> str | None:
    """Where TwoFactorMiddleware sends this request, or None to let it through."""
    if not request.user.is_authenticated and PENDING_SESSION_KEY not in request.session:
        return None  # most anonymous requests: webhooks, /healthz, the sign-in page
    path = request.path
    verify_path = reverse("two_factor_verify")
    if not request.user.is_authenticated:
        # A right password waiting for its code: the admin says so rather than asking
        # for the password again (the sign-in page itself stays open, to start again).
        if path not in (
            verify_path,
            reverse("admin:login"),
        ):
            return verify_path
        return None
    if needs_code(request):
        if path == verify_path:
            return None
        return with_next(verify_path, request)
    if needs_enrolment(request) and path != reverse("two_factor_setup"):
        return reverse("two_factor_setup")
    return None


def with_next(url: str, request: HttpRequest) -> str:
    return f"{url}?{REDIRECT_FIELD_NAME}={quote(request.get_full_path(), safe='/')}"


# --- The admin site ------------------------------------------------------------------------


class TwoFactorLoginView(LoginView):
    """The admin's sign-in form; a user with an authenticator goes on to the code page."""

    def form_valid(self, form: Any) -> HttpResponse:
        user = form.get_user()
        if not TOTPDevice.objects.filter(user=user, confirmed=True).exists():
            return super().form_valid(form)
        start_pending(self.request, user, self.get_success_url())
        return HttpResponseRedirect(reverse("two_factor_verify"))


class TwoFactorAdminSite(admin.AdminSite):
    """The project's admin site (admin.site, its class swapped by ``protect``): a user who
    has an authenticator needs a verified session, and signs in through the code page.
    """

    def has_permission(self, request: HttpRequest) -> bool:
        if not super().has_permission(request):
            return False
        # Signing out needs no code (the admin sends a refused sign-out to its index).
        if request.path == reverse("admin:logout", current_app=self.name):
            return True
        return not needs_code(request)

    @method_decorator(never_cache)
    @method_decorator(login_not_required)
    def login(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        # AdminSite.login, with TwoFactorLoginView for Django's LoginView.
        if request.method == "GET" and self.has_permission(request):
            return HttpResponseRedirect(reverse("admin:index", current_app=self.name))
        from django.contrib.admin.forms import AdminAuthenticationForm

        context = {
            **self.each_context(request),
            "title": "Log in",
            "subtitle": None,
            "app_path": request.get_full_path(),
            "username": request.user.get_username(),
        }
        if REDIRECT_FIELD_NAME not in request.GET and REDIRECT_FIELD_NAME not in request.POST:
            context[REDIRECT_FIELD_NAME] = reverse("admin:index", current_app=self.name)
        context.update(extra_context or {})
        request.current_app = self.name
        return TwoFactorLoginView.as_view(
            extra_context=context,
            authentication_form=self.login_form or AdminAuthenticationForm,
            template_name=self.login_template or "admin/login.html",
        )(request)


def protect(site: admin.AdminSite) -> None:
    """Make ``site`` a TwoFactorAdminSite, keeping its registrations, as django-otp's docs
    do with OTPAdminSite (``admin.site.__class__ = ...``). Before ``site.urls`` is read:
    the URLs hold the site's login view."""
    if isinstance(site, TwoFactorAdminSite):
        return
    if site.__class__ is not admin.AdminSite:
        raise ImproperlyConfigured(f"Cannot add two-factor sign-in to {site.__class__}.")
    site.__class__ = TwoFactorAdminSite


def page(request: HttpRequest, template: str, status: int = 200, **context: Any) -> HttpResponse:
    return render(request, template, {**admin.site.each_context(request), **context}, status=status)


# --- Sign-in's second step -----------------------------------------------------------------


def start_pending(request: HttpRequest, user: Any, next_url: str) -> None:
    """Remember, in a fresh session, who gave the right password; not signed in yet."""
    request.session.cycle_key()
    request.session[PENDING_SESSION_KEY] = {
        "user": user.pk,
        "backend": user.backend,
        "hash": user.get_session_auth_hash(),
        "next": next_url,
        "at": int(time.time()),
    }


def pending_user(request: HttpRequest) -> Any | None:
    """The user waiting for their code: still active, same password, not too long ago."""
    data = request.session.get(PENDING_SESSION_KEY)
    if not isinstance(data, dict):
        return None
    user = None
    if time.time() - data.get("at", 0) <= PENDING_SECONDS:
        user = get_user_model().objects.filter(pk=data.get("user"), is_active=True).first()
    if user is None or not constant_time_compare(
        user.get_session_auth_hash(), data.get("hash", "")
    ):
        request.session.pop(PENDING_SESSION_KEY, None)
        return None
    user.backend = data.get("backend")
    return user


@dataclass
class CodeCheck:
    device: Device | None = None
    wait_seconds: int = 0  # the devices are throttled after wrong codes: not checked


def normalise(code: str) -> str:
    return re.sub(r"[\s-]", "", code).lower()


@sensitive_variables("code", "token")
def check_code(user: Any, code: str, devices: list[Device] | None = None) -> CodeCheck:
    """Which of the user's confirmed devices takes ``code``: six digits are a code from
    the app, anything else a recovery code (used up when it matches)."""
    token = normalise(code)
    if devices is None:
        model = TOTPDevice if re.fullmatch(r"\d{6}", token) else StaticDevice
        devices = list(model.objects.filter(user=user, confirmed=True))
    wait, checked = 0, False
    for device in devices:
        allowed, info = device.verify_is_allowed()
        if not allowed:
            until = (info or {}).get("locked_until")
            seconds = (until - timezone.now()).total_seconds() if until else 1
            wait = max(wait, int(seconds) + 1)
            continue
        checked = True
        verified = django_otp.verify_token(user, device.persistent_id, token)
        if verified is not None:
            return CodeCheck(device=verified)
    # Only a code some device was free to check is a wrong one.
    return CodeCheck() if checked else CodeCheck(wait_seconds=wait)


def count_failure(request: HttpRequest, user: Any) -> bool:
    """A wrong code is a failed sign-in for django-axes; True when it locks the user out."""
    user_login_failed.send(
        sender=__name__, credentials=get_credentials(user.get_username()), request=request
    )
    return bool(getattr(request, "axes_locked_out", False))


def locked_out(request: HttpRequest, user: Any) -> bool:
    return AxesProxyHandler.is_locked(request, get_credentials(user.get_username()))


def lockout_page(request: HttpRequest, user: Any) -> HttpResponse:
    """django-axes's lockout page (AXES_LOCKOUT_CALLABLE); a session signed in here is
    signed out, so whoever guessed codes in it keeps nothing."""
    credentials = get_credentials(user.get_username())
    request.session.pop(PENDING_SESSION_KEY, None)
    if request.user.is_authenticated:
        auth_logout(request)
    request.axes_locked_out = True  # type: ignore[attr-defined]
    request.axes_credentials = credentials  # type: ignore[attr-defined]
    return get_lockout_response(request, None, credentials)


class CodeField(forms.CharField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("label", "Code")
        kwargs.setdefault(
            "help_text",
            "The 6-digit code your authenticator app shows now, or one of your recovery codes.",
        )
        super().__init__(
            max_length=32,
            strip=True,
            widget=forms.TextInput(
                attrs={
                    "autocomplete": "one-time-code",
                    "autocapitalize": "none",
                    "spellcheck": "false",
                    "autofocus": True,
                    "size": 12,
                }
            ),
            **kwargs,
        )


class CodeForm(forms.Form):
    code = CodeField()


WRONG_CODE = (
    "That code is not right. Type the code your app shows now (it changes every 30 seconds), "
    "or a recovery code."
)


def wait_message(seconds: int) -> str:
    return (
        f"Too many wrong codes in a row: wait {seconds} second{'s' if seconds != 1 else ''}, "
        "then type the code your app shows then."
    )


def _safe_next(request: HttpRequest, url: str | None) -> str:
    if url and url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return url
    return reverse("admin:index")


def _used_recovery_code(request: HttpRequest, device: Device) -> None:
    if isinstance(device, StaticDevice):
        left = device.token_set.count()
        messages.warning(
            request,
            f"You signed in with a recovery code; it is used up ({left} left). "
            "Make new ones on the two-factor sign-in page if you are running out.",
        )


@never_cache
@sensitive_post_parameters("code")
@require_http_methods(["GET", "POST"])
def verify(request: HttpRequest) -> HttpResponse:
    """The code page: after the password (a pending sign-in), or for a signed-in user with
    an authenticator whose session has not given a code."""
    pending = None if request.user.is_authenticated else pending_user(request)
    user = request.user if request.user.is_authenticated else pending
    if user is None:
        if PENDING_SESSION_KEY in request.session:
            request.session.pop(PENDING_SESSION_KEY)
            messages.info(request, "Sign in again: the time to type your code ran out.")
        return redirect_to_login(reverse("admin:index"), reverse("admin:login"))
    if pending is None and not needs_code(request):
        return redirect(_safe_next(request, request.GET.get(REDIRECT_FIELD_NAME)))

    if request.method == "POST" and "cancel" in request.POST:
        request.session.pop(PENDING_SESSION_KEY, None)
        if request.user.is_authenticated:
            auth_logout(request)
        return redirect("admin:login")

    form = CodeForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        if locked_out(request, user):
            return lockout_page(request, user)
        if form.is_valid():
            result = check_code(user, form.cleaned_data["code"])
            if result.device is not None:
                if pending is not None:
                    next_url = request.session[PENDING_SESSION_KEY].get("next")
                    user.otp_device = result.device  # django_otp verifies the new session
                    auth_login(request, user, backend=user.backend)
                    request.session.pop(PENDING_SESSION_KEY, None)
                else:
                    django_otp.login(request, result.device)
                    next_url = request.GET.get(REDIRECT_FIELD_NAME)
                _used_recovery_code(request, result.device)
                return redirect(_safe_next(request, next_url))
            if result.wait_seconds:
                form.add_error("code", wait_message(result.wait_seconds))
            else:
                form.add_error("code", WRONG_CODE)
                if count_failure(request, user):
                    return lockout_page(request, user)
    return page(
        request,
        "two_factor/verify.html",
        title="Two-factor sign-in",
        form=form,
        signing_in=user,
    )


# --- Enrolment, recovery codes, turning it off -----------------------------------------------


def _signed_in_staff(request: HttpRequest) -> HttpResponse | None:
    """A redirect for anyone who may not manage their second factor here and now."""
    if not (request.user.is_authenticated and request.user.is_active and request.user.is_staff):
        return redirect_to_login(request.get_full_path(), reverse("admin:login"))
    if needs_code(request):
        return redirect(with_next(reverse("two_factor_verify"), request))
    return None


def secret_text(device: TOTPDevice) -> str:
    """The secret as authenticator apps take it typed in: base32, in groups of four."""
    secret = b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def qr_code_svg(data: str) -> str:
    """``data`` as an inline SVG QR code (no script, no data: URL: fine under the CSP)."""
    image = qrcode.make(
        data, image_factory=qrcode.image.svg.SvgPathFillImage, box_size=10, border=4
    )
    root = image.get_image()
    root.set("width", "220")
    root.set("height", "220")
    root.set("role", "img")
    root.set("aria-label", "QR code to scan with your authenticator app")
    return image.to_string(encoding="unicode")


def make_recovery_codes(user: Any) -> list[str]:
    """New recovery codes for ``user``, replacing any earlier ones."""
    with transaction.atomic():
        StaticDevice.objects.filter(user=user).delete()
        device = StaticDevice.objects.create(user=user, name=RECOVERY_NAME, confirmed=True)
        codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
        StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


def recovery_codes_left(user: Any) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


def show_codes(request: HttpRequest, codes: list[str], *, first: bool) -> HttpResponse:
    """The recovery codes, this once (in the response to the form that made them)."""
    shown = [f"{code[:4]}-{code[4:]}" for code in codes]
    return page(
        request,
        "two_factor/recovery_codes.html",
        title="Your recovery codes",
        codes=shown,
        first=first,
    )


class EnrolForm(forms.Form):
    current = CodeField(
        label="Code from your current authenticator",
        help_text="The code your current app shows, or one of your recovery codes.",
    )
    code = CodeField(
        label="Code from the app",
        help_text="The 6-digit code the app shows after you scanned the QR code.",
    )

    def __init__(self, *args: Any, replacing: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not replacing:
            del self.fields["current"]
        else:
            self.fields["code"].widget.attrs.pop("autofocus", None)


def _unconfirmed_device(user: Any) -> TOTPDevice:
    """The app being set up: the same one until it is confirmed, so a reload keeps the QR code."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()
    return device or TOTPDevice.objects.create(user=user, name=APP_NAME, confirmed=False)


@never_cache
@sensitive_post_parameters("code", "current")
@require_http_methods(["GET", "POST"])
def setup(request: HttpRequest) -> HttpResponse:
    """Set up (or replace) the authenticator app: QR code and secret, then a code from it."""
    if (refused := _signed_in_staff(request)) is not None:
        return refused
    user = request.user
    current = authenticator(user)
    device = _unconfirmed_device(user)
    form = EnrolForm(
        request.POST if request.method == "POST" else None, replacing=current is not None
    )
    if request.method == "POST" and form.is_valid():
        if current is not None:
            if locked_out(request, user):
                return lockout_page(request, user)
            checked = check_code(user, form.cleaned_data["current"])
            if checked.device is None:
                if checked.wait_seconds:
                    form.add_error("current", wait_message(checked.wait_seconds))
                else:
                    form.add_error("current", WRONG_CODE)
                    if count_failure(request, user):
                        return lockout_page(request, user)
        if not form.errors:
            checked = check_code(user, form.cleaned_data["code"], devices=[device])
            if checked.device is None:
                form.add_error(
                    "code",
                    wait_message(checked.wait_seconds)
                    if checked.wait_seconds
                    else "That code is not right. Check the app shows the account you just "
                    "added, and type the code it shows now.",
                )
            else:
                confirmed = checked.device
                with transaction.atomic():
                    TOTPDevice.objects.filter(user=user).exclude(pk=confirmed.pk).delete()
                    confirmed.confirmed = True
                    confirmed.save(update_fields=["confirmed"])
                    codes = make_recovery_codes(user)
                django_otp.login(request, confirmed)
                forget_state(request)
                return show_codes(request, codes, first=True)
    return page(
        request,
        "two_factor/setup.html",
        title="Replace your authenticator app" if current else "Set up two-factor sign-in",
        form=form,
        replacing=current is not None,
        required=needs_enrolment(request),
        qr_code=mark_safe(qr_code_svg(device.config_url)),  # noqa: S308 - made by qrcode
        secret=secret_text(device),
    )


@never_cache
@require_http_methods(["GET"])
def overview(request: HttpRequest) -> HttpResponse:
    """Two-factor sign-in for the signed-in user: on or off, and what they can do."""
    if (refused := _signed_in_staff(request)) is not None:
        return refused
    device = authenticator(request.user)
    return page(
        request,
        "two_factor/overview.html",
        title="Two-factor sign-in",
        device=device,
        codes_left=recovery_codes_left(request.user) if device else 0,
        must_keep=must_keep_two_factor(request.user),
        form=CodeForm(),
    )


def _checked_current_code(request: HttpRequest, form: CodeForm) -> HttpResponse | Device | None:
    """The device that took the form's current code; a lockout response; or None with the
    form's error set."""
    user = request.user
    if locked_out(request, user):
        return lockout_page(request, user)
    if not form.is_valid():
        return None
    checked = check_code(user, form.cleaned_data["code"])
    if checked.device is not None:
        return checked.device
    if checked.wait_seconds:
        form.add_error("code", wait_message(checked.wait_seconds))
        return None
    form.add_error("code", WRONG_CODE)
    if count_failure(request, user):
        return lockout_page(request, user)
    return None


@never_cache
@sensitive_post_parameters("code")
@require_http_methods(["POST"])
def new_recovery_codes(request: HttpRequest) -> HttpResponse:
    """New recovery codes, for a current code; the old ones stop working."""
    if (refused := _signed_in_staff(request)) is not None:
        return refused
    device = authenticator(request.user)
    if device is None:
        return redirect("two_factor")
    form = CodeForm(request.POST)
    checked = _checked_current_code(request, form)
    if isinstance(checked, HttpResponse):
        return checked
    if checked is None:
        return page(
            request,
            "two_factor/overview.html",
            title="Two-factor sign-in",
            device=device,
            codes_left=recovery_codes_left(request.user),
            must_keep=must_keep_two_factor(request.user),
            form=form,
        )
    return show_codes(request, make_recovery_codes(request.user), first=False)


@never_cache
@sensitive_post_parameters("code")
@require_http_methods(["GET", "POST"])
def disable(request: HttpRequest) -> HttpResponse:
    """Turn two-factor sign-in off, for a current code; never for an Admin who must keep it."""
    if (refused := _signed_in_staff(request)) is not None:
        return refused
    user = request.user
    if authenticator(user) is None:
        messages.info(request, "Two-factor sign-in is off.")
        return redirect("two_factor")
    must_keep = must_keep_two_factor(user)
    form = CodeForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and not must_keep:
        checked = _checked_current_code(request, form)
        if isinstance(checked, HttpResponse):
            return checked
        if checked is not None:
            with transaction.atomic():
                TOTPDevice.objects.filter(user=user).delete()
                StaticDevice.objects.filter(user=user).delete()
            forget_state(request)
            messages.success(request, "Two-factor sign-in is off.")
            return redirect("two_factor")
    return page(
        request,
        "two_factor/disable.html",
        status=403 if must_keep and request.method == "POST" else 200,
        title="Turn off two-factor sign-in",
        form=form,
        must_keep=must_keep,
    )
