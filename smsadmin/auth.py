"""Sign-in pieces: the two lockouts and their page, unlocking, and the password change that
clears the forced flag."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from axes.helpers import get_client_ip_address, get_client_username
from axes.models import AccessAttempt
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.views import PasswordChangeView
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.response import TemplateResponse
from django.urls import reverse_lazy
from django.utils import timezone

ADDRESS = "address"
ACCOUNT = "account"


def client_ip(request: HttpRequest) -> str | None:
    """The client's address, for django-axes: REMOTE_ADDR, or behind TRUSTED_PROXY_COUNT
    proxies the X-Forwarded-For entry the outermost of them appended.

    Each proxy appends the address it received the request from, so the entries a
    client typed in itself stand further left and are never read.
    """
    proxies = settings.TRUSTED_PROXY_COUNT
    remote = request.META.get("REMOTE_ADDR") or None
    if not proxies:
        return remote
    entries = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    entries = [entry for entry in entries if entry]
    if len(entries) < proxies:
        return remote
    return entries[-proxies]


def address_cooloff() -> timedelta:
    return settings.AXES_ADDRESS_COOLOFF


def account_cooloff() -> timedelta:
    return timedelta(minutes=settings.AXES_ACCOUNT_COOLOFF_MINUTES)


@dataclass(frozen=True)
class Lockout:
    """Why a user name may not sign in now: ``scope`` is ADDRESS (that user name from that
    address) or ACCOUNT (that user name from every address), until ``until``."""

    scope: str
    until: datetime


def signin_lockout(
    username: str | None, ip_address: str | None, *, now: datetime | None = None
) -> Lockout | None:
    """The lockout that holds for this user name signing in from this address, if any.

    Reads the same django-axes records, and counts them the same way, as
    ``failure_limit`` below: each record is one (user name, address, browser) with its
    failures and the time of its latest one.
    """
    if not username:
        return None
    now = now or timezone.now()
    rows = list(
        AccessAttempt.objects.filter(username=username, attempt_time__gte=now - account_cooloff())
        .order_by("-attempt_time")
        .values_list("ip_address", "attempt_time", "failures_since_start")
    )
    found: list[Lockout] = []
    # The account: the newest records' failures add up to the limit; once the oldest of
    # those is older than the account's cool-off, the rest stay under it.
    total = 0
    for _ip, attempt_time, failures in rows:
        total += failures
        if total >= settings.AXES_ACCOUNT_FAILURE_LIMIT:
            found.append(Lockout(ACCOUNT, attempt_time + account_cooloff()))
            break
    # The pair: its failures in records whose latest failure is recent enough.
    pair = [
        (attempt_time, failures)
        for ip, attempt_time, failures in rows
        if ip_address and ip == ip_address and attempt_time >= now - address_cooloff()
    ]
    if sum(failures for _t, failures in pair) >= settings.AXES_ADDRESS_FAILURE_LIMIT:
        found.append(Lockout(ADDRESS, max(t for t, _f in pair) + address_cooloff()))
    if not found:
        return None
    # Both: the one that lasts longer is what the person meets.
    return max(found, key=lambda lockout: lockout.until)


def failure_limit(request: HttpRequest, credentials: dict | None = None) -> int:
    """AXES_FAILURE_LIMIT: the limit axes compares with this sign-in's failure count.

    Axes counts per (user name, address) and per user name (AXES_LOCKOUT_PARAMETERS) and
    compares the larger count, which is always the user name's (it includes the pair's),
    with one limit. So: while this pair has AXES_ADDRESS_FAILURE_LIMIT failures within
    AXES_ADDRESS_COOLOFF, the pair's limit (the account's count is at least that, so the
    pair is refused); otherwise the account's, AXES_ACCOUNT_FAILURE_LIMIT.
    """
    username = get_client_username(request, credentials)
    ip_address = getattr(request, "axes_ip_address", None)
    now = getattr(request, "axes_attempt_time", None) or timezone.now()
    if username and ip_address:
        pair = AccessAttempt.objects.filter(
            username=username,
            ip_address=ip_address,
            attempt_time__gte=now - address_cooloff(),
        ).values_list("failures_since_start", flat=True)
        if sum(pair) >= settings.AXES_ADDRESS_FAILURE_LIMIT:
            return settings.AXES_ADDRESS_FAILURE_LIMIT
    return settings.AXES_ACCOUNT_FAILURE_LIMIT


# The sign-in page warns once a user name has this many failures from one address.
WARN_AFTER_FAILURES = 3


def address_tries_left(
    username: str | None, ip_address: str | None, *, now: datetime | None = None
) -> int | None:
    """How many more failed sign-ins this user name may have from this address before
    ``failure_limit`` locks the pair, once it is close (None before, and once locked).

    Counts the same django-axes records as ``failure_limit`` (the pair's failures within
    AXES_ADDRESS_COOLOFF). Close: WARN_AFTER_FAILURES failures, or the last try when the
    limit is lower.
    """
    if not username or not ip_address:
        return None
    now = now or timezone.now()
    failures = sum(
        AccessAttempt.objects.filter(
            username=username,
            ip_address=ip_address,
            attempt_time__gte=now - address_cooloff(),
        ).values_list("failures_since_start", flat=True)
    )
    limit = settings.AXES_ADDRESS_FAILURE_LIMIT
    if failures < min(WARN_AFTER_FAILURES, limit - 1) or failures >= limit:
        return None
    return limit - failures


@login_not_required
def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin's sign-in page (``admin.site.login``, the two-factor one), which after a
    failed password also says how many tries are left before the address lockout.

    The count is read once the form has been checked, when django-axes has recorded the
    failure; the page's template is rendered after, with ``signin_tries_left`` and
    ``signin_lock_minutes`` (templates/admin/login.html).
    """
    response = admin.site.login(request)
    if (
        request.method == "POST"
        and isinstance(response, TemplateResponse)
        and not response.is_rendered
        and not getattr(request, "axes_locked_out", False)
    ):
        ip_address = getattr(request, "axes_ip_address", None) or get_client_ip_address(request)
        left = address_tries_left(get_client_username(request), ip_address)
        if left is not None:
            response.context_data = {
                **(response.context_data or {}),
                "signin_tries_left": left,
                "signin_lock_minutes": int(address_cooloff().total_seconds() // 60),
            }
    return response


def signin_unlock(*, usernames: list[str]) -> int:
    """Lift both lockouts of these user names, from every address, and start their
    failure counts again. Returns how many of them had failures counted."""
    usernames = [name for name in usernames if name]
    attempts = AccessAttempt.objects.filter(username__in=usernames)
    counted = attempts.values("username").distinct().count()
    # Both counts (the pair's and the account's) are these records: deleting them
    # resets both. Axes' history (successful sign-ins, failure log) stays.
    attempts.delete()
    return counted


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict | None = None,
) -> HttpResponse:
    """django-axes calls this once a sign-in is refused: says which lockout, and until when."""
    username = get_client_username(request, credentials) or ""
    now = timezone.now()
    lockout = signin_lockout(username, getattr(request, "axes_ip_address", None), now=now)
    if lockout is None:  # unlocked in between: the pair's wording and its full time
        lockout = Lockout(ADDRESS, now + address_cooloff())
    minutes = max(1, math.ceil((lockout.until - now).total_seconds() / 60))
    return render(
        request,
        "registration/locked_out.html",
        {
            "minutes": minutes,
            "until": lockout.until,
            "username": username,
            "account_locked": lockout.scope == ACCOUNT,
            "address_limit": settings.AXES_ADDRESS_FAILURE_LIMIT,
            "account_limit": settings.AXES_ACCOUNT_FAILURE_LIMIT,
            "account_minutes": settings.AXES_ACCOUNT_COOLOFF_MINUTES,
        },
        status=429,
    )


class NewPasswordChangeForm(PasswordChangeForm):
    def clean_new_password1(self) -> str:
        new = self.cleaned_data.get("new_password1", "")
        if new and self.user.check_password(new):
            raise forms.ValidationError(
                "Choose a new password; this is the one you have now.",
                code="password_unchanged",
            )
        return new


class ForcedPasswordChangeView(PasswordChangeView):
    """Django's password change, which also lifts must_change_password."""

    form_class = NewPasswordChangeForm
    template_name = "registration/password_change_form.html"
    success_url = reverse_lazy("password_change_done")

    def get_context_data(self, **kwargs):  # type: ignore[no-untyped-def]
        context = super().get_context_data(**kwargs)
        context["forced"] = self.request.user.must_change_password
        context["title"] = "Change your password"
        return context

    def form_valid(self, form):  # type: ignore[no-untyped-def]
        form.user.must_change_password = False
        response = super().form_valid(form)
        messages.success(self.request, "Your password was changed.")
        return response
