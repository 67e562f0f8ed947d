"""Sign-in pieces: the lockout page and the password change that clears the forced flag."""

from __future__ import annotations

import math

from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.views import PasswordChangeView
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse_lazy
from django.utils import timezone


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


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict | None = None,
) -> HttpResponse:
    """django-axes calls this once a username+IP pair is locked out."""
    cool_off = get_cool_off(request)
    username = get_client_username(request, credentials) or ""
    minutes = math.ceil(cool_off.total_seconds() / 60) if cool_off else 15
    attempts = AccessAttempt.objects.filter(username=username)
    ip_address = getattr(request, "axes_ip_address", None)
    if ip_address:
        attempts = attempts.filter(ip_address=ip_address)
    latest = attempts.order_by("-attempt_time").values_list("attempt_time", flat=True).first()
    if latest is not None and cool_off:
        remaining = latest + cool_off - timezone.now()
        minutes = max(1, math.ceil(remaining.total_seconds() / 60))
    return render(
        request,
        "registration/locked_out.html",
        {"minutes": minutes, "username": username},
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
