"""The two roles, as Django groups. Called by data migrations, so it takes the app registry."""

from __future__ import annotations

from typing import Any

ADMIN = "Admin"
SOCIAL_MANAGER = "Social manager"

# Social managers run the day-to-day: contacts, events, blasts. They may add an
# unsubscribe but not manage users, lift a suppression, or re-subscribe someone who
# opted out (suppression.lift_unsubscribe), since those can make us text people who
# asked us not to. Nobody edits or deletes those records: lifting keeps them as history.
SOCIAL_MANAGER_PERMISSIONS: dict[str, list[str]] = {
    "members": [
        "add_member",
        "change_member",
        "delete_member",
        "view_member",
        # Uploading a CSV file (and confirming it) and seeing past imports.
        "add_importjob",
        "view_importjob",
        # Tags ("volunteers", "north side") to narrow a blast's community.
        "add_tag",
        "change_tag",
        "delete_tag",
        "view_tag",
    ],
    "events": [
        "add_event",
        "change_event",
        "delete_event",
        "view_event",
        "add_registration",
        "change_registration",
        "delete_registration",
        "view_registration",
    ],
    "messaging": [
        "add_blast",
        "change_blast",
        "view_blast",
        "send_blast",
        "view_delivery",
        "view_outboxmessage",
        # The inbox: reading replies and marking them handled.
        "view_inboundmessage",
        "change_inboundmessage",
        # Repeating blasts (a weekly or monthly message).
        "add_recurrence",
        "change_recurrence",
        "delete_recurrence",
        "view_recurrence",
    ],
    "suppression": [
        "add_unsubscribedcontact",
        "view_unsubscribedcontact",
        "view_suppressedcontact",
        "view_failureevent",
    ],
}


def sync_groups(apps: Any, schema_editor: Any = None) -> None:
    """Create or update both groups; safe to run again after new permissions appear."""
    from django.contrib.auth.management import create_permissions

    # Permissions are normally made after migrate finishes; make them now so the
    # groups can hold them.
    for app_config in apps.get_app_configs():
        # A migration's historical app configs have no models module, and
        # create_permissions skips those. Lend one, and give back what was there: with
        # the real registry (post_migrate after a flush), clearing it would make every
        # later post_migrate skip every app, and the roles would not come back.
        previous = getattr(app_config, "models_module", None)
        app_config.models_module = previous or True
        try:
            create_permissions(app_config, apps=apps, verbosity=0)
        finally:
            app_config.models_module = previous

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")

    admin, _ = Group.objects.get_or_create(name=ADMIN)
    admin.permissions.set(Permission.objects.all())

    manager, _ = Group.objects.get_or_create(name=SOCIAL_MANAGER)
    wanted = []
    for app_label, codenames in SOCIAL_MANAGER_PERMISSIONS.items():
        found = Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames)
        wanted.extend(found)
    manager.permissions.set(wanted)
