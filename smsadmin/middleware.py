from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from smsadmin import two_factor


def _always_open(path: str, *, prefixes: tuple[str, ...]) -> bool:
    """Pages a user held at a sign-in step may still reach: the password change, signing
    out, /healthz, and paths under ``prefixes``."""
    allowed = (
        reverse("password_change"),
        reverse("password_change_done"),
        reverse("admin:logout"),
        reverse("healthz"),
    )
    return path in allowed or path.startswith(prefixes)


class ForcePasswordChangeMiddleware:
    """Send a user flagged must_change_password to the password page until they change it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and getattr(user, "must_change_password", False)
            and not self._allowed(request.path)
        ):
            return redirect(reverse("password_change"))
        return self.get_response(request)

    @staticmethod
    def _allowed(path: str) -> bool:
        return _always_open(path, prefixes=("/static/",))


class TwoFactorMiddleware:
    """The second factor, for every page but signing out, the password change, static
    files, /healthz and Twilio's webhooks (smsadmin.two_factor.redirect_for):

    - a sign-in waiting for its code, or a session of a user with an authenticator app
      that has not given a code, goes to the code page;
    - with REQUIRE_2FA_FOR_ADMINS, an Admin without an authenticator goes to enrolment.

    After ForcePasswordChangeMiddleware, so a forced password change comes first.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        target = two_factor.redirect_for(request)
        if target is not None and not self._allowed(request.path):
            return redirect(target)
        return self.get_response(request)

    @staticmethod
    def _allowed(path: str) -> bool:
        return _always_open(path, prefixes=("/static/", "/webhooks/"))
