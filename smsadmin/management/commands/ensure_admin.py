import secrets

from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from smsadmin.models import User
from smsadmin.roles import ADMIN


class Command(BaseCommand):
    help = (
        "On a fresh install (no users yet), create an Admin account and print its "
        "password once. Does nothing when any user exists."
    )

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--username", default="admin")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        if User.objects.exists():
            self.stdout.write("Users exist already; no account created.")
            return
        password = secrets.token_urlsafe(12)
        user = User.objects.create_superuser(
            username=options["username"], email="", password=password
        )
        user.must_change_password = True
        user.save(update_fields=["must_change_password"])
        user.groups.add(Group.objects.get(name=ADMIN))
        bar = "=" * 64
        self.stdout.write(
            f"\n{bar}\n"
            "  First start: an Admin account was created.\n"
            f"  User name: {user.username}\n"
            f"  Password:  {password}\n"
            "  This is shown once. You will choose your own password at first sign-in.\n"
            f"{bar}\n"
        )
