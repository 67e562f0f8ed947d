"""The admin's models list, grouped the way staff think instead of by Django app.

Four groups, in this order: Contacts (members, tags, events, registrations, CSV imports),
Sending (blasts, repeating blasts, deliveries, outbox, inbox), Opt-outs (unsubscribed and
suppressed contacts, delivery failures) and Users and sign-in (users, groups, and
whatever the sign-in lockout app, axes, registers: it never gets a heading of its own).

A model is placed by its label when listed below, else by its app; a model of an app not
listed keeps its app's own section, after the groups. Only the whole list is grouped (the
index and the navigation sidebar): an app's own page, /admin/<app_label>/, lists that
app's models as Django always did, and every registration and URL stays as it is.

:func:`install` puts :func:`get_app_list` on the default ``admin.site`` (called from
``SmsadminConfig.ready()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MethodType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.contrib.admin import AdminSite
    from django.http import HttpRequest


@dataclass(frozen=True)
class Group:
    slug: str  # in the page's CSS classes and ids: app-<slug>, <slug>-<model>
    name: str
    apps: tuple[str, ...]  # every model of these apps, unless listed in another group
    models: tuple[str, ...]  # the order within the group; others follow by name


GROUPS = (
    Group(
        "contacts",
        "Contacts",
        apps=("members", "events"),
        models=(
            "members.member",
            "members.tag",
            "events.event",
            "events.registration",
            "members.importjob",
        ),
    ),
    Group(
        "sending",
        "Sending",
        apps=("messaging",),
        models=(
            "messaging.blast",
            "messaging.recurrence",
            "messaging.delivery",
            "messaging.outboxmessage",
            "messaging.inboundmessage",
        ),
    ),
    Group(
        "opt-outs",
        "Opt-outs",
        apps=("suppression",),
        models=(
            "suppression.unsubscribedcontact",
            "suppression.suppressedcontact",
            "suppression.failureevent",
        ),
    ),
    Group(
        "users",
        "Users and sign-in",
        apps=("smsadmin", "auth", "axes", "otp_totp", "otp_static"),
        models=(
            "smsadmin.user",
            "auth.group",
            # axes' records (shown as sign-in lockouts, sign-ins, failed sign-ins).
            "axes.accessattempt",
            "axes.accesslog",
            "axes.accessfailurelog",
            # Two-factor devices: deleting one is how an Admin helps someone who lost
            # both their phone and their recovery codes.
            "otp_totp.totpdevice",
            "otp_static.staticdevice",
        ),
    ),
)

_BY_MODEL = {label: group for group in GROUPS for label in group.models}
_BY_APP = {app: group for group in GROUPS for app in group.apps}


def _label(app_label: str, model: dict[str, Any]) -> str:
    return f"{app_label}.{model['object_name'].lower()}"


def group_app_list(app_dict: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Django's per-app ``app_dict`` (``AdminSite._build_app_dict``) as the groups.

    Each group is shaped like an app of Django's list (name, app_label, app_url,
    has_module_perms, models), so the admin's templates render it unchanged; its link
    goes to the page of the first of its apps the user may see. Groups with nothing the
    user may see are left out.
    """
    placed: dict[str, list[tuple[str, dict[str, Any]]]] = {g.slug: [] for g in GROUPS}
    others: list[dict[str, Any]] = []
    for app_label, app in app_dict.items():
        rest = []
        for model in app["models"]:
            label = _label(app_label, model)
            group = _BY_MODEL.get(label) or _BY_APP.get(app_label)
            if group is None:
                rest.append(model)
            else:
                placed[group.slug].append((label, model))
        if rest:
            others.append({**app, "models": rest})

    result = []
    for group in GROUPS:
        found = placed[group.slug]
        if not found:
            continue
        order = {label: i for i, label in enumerate(group.models)}
        found.sort(key=lambda item: (order.get(item[0], len(order)), item[1]["name"].lower()))
        seen = [app for app in group.apps if app in app_dict]
        link_app = seen[0] if seen else found[0][0].split(".")[0]
        result.append(
            {
                "name": group.name,
                "app_label": group.slug,
                "app_url": app_dict[link_app]["app_url"],
                "has_module_perms": True,
                "models": [model for _, model in found],
            }
        )
    others.sort(key=lambda app: app["name"].lower())
    for app in others:
        app["models"].sort(key=lambda model: model["name"])
    return result + others


def get_app_list(
    self: AdminSite, request: HttpRequest, app_label: str | None = None
) -> list[dict[str, Any]]:
    """``AdminSite.get_app_list``, grouped when it lists every app (see the module)."""
    from django.contrib.admin import AdminSite

    if app_label is not None:
        return AdminSite.get_app_list(self, request, app_label)
    return group_app_list(self._build_app_dict(request))


def install(site: AdminSite | None = None) -> None:
    """Group the models list of ``site`` (the default ``admin.site``)."""
    if site is None:
        from django.contrib import admin

        site = admin.site
    site.get_app_list = MethodType(get_app_list, site)  # type: ignore[method-assign]
