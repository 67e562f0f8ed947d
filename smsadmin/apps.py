from django.apps import AppConfig
from django.db.models.signals import post_migrate

from smsadmin import admin_site, files


def _sync_roles(sender: AppConfig, **kwargs: object) -> None:
    # Permissions added by later migrations join the roles on the next migrate.
    from django.apps import apps as global_apps

    from smsadmin.roles import sync_groups

    sync_groups(kwargs.get("apps") or global_apps)


class SmsadminConfig(AppConfig):
    name = "smsadmin"
    verbose_name = "Users and sign-in"

    def ready(self) -> None:
        post_migrate.connect(_sync_roles, sender=self, dispatch_uid="smsadmin-sync-roles")
        files.ready()  # the SQLite files and the broker's folders: the app's user only
        admin_site.install()  # the admin's models list, grouped the way staff think
