"""Who may open the managers' pages, and the admin context they render in."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

View = Callable[..., HttpResponse]


def staff_permission_required(permission: str) -> Callable[[View], View]:
    """Anonymous people go to the admin's sign-in page; staff without ``permission``
    get 403. Non-staff accounts are treated as anonymous, as the admin does."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            user = request.user
            if not (user.is_authenticated and user.is_active and user.is_staff):
                return redirect_to_login(request.get_full_path(), reverse("admin:login"))
            if not user.has_perm(permission):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


send_blast_required = staff_permission_required("messaging.send_blast")
view_blast_required = staff_permission_required("messaging.view_blast")


def admin_context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    """The admin's own context (site header, user links, the models sidebar) plus ``extra``."""
    return {**admin.site.each_context(request), **extra}
