"""Fixtures shared by every app's tests: one staff user per role, and clients signed in as them.

Environment variables for the suite are set in smsadmin/pytest_env.py (loaded by pytest.ini
before Django's settings are read). This file adds fixtures, and overrides two settings for
the whole run (see _test_only_settings).
"""

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.test import Client, override_settings

from smsadmin.roles import ADMIN, SOCIAL_MANAGER

pytest_plugins = ["smsadmin.testing.browser"]

# Long and uncommon enough for every AUTH_PASSWORD_VALIDATORS entry.
STAFF_PASSWORD = "Staple-Horse-Battery-42"


def make_staff_user(django_user_model, username: str, group_name: str):
    """A staff member who signs in normally: in one role group, no forced password change.

    Not a superuser: what they may do comes from their group alone.
    """
    user = django_user_model.objects.create_user(
        username=username,
        password=STAFF_PASSWORD,
        email=f"{username}@example.org",
        is_staff=True,
        must_change_password=False,
    )
    user.groups.add(Group.objects.get(name=group_name))
    return user


@pytest.fixture(scope="session", autouse=True)
def _test_only_settings():
    """Two settings the suite changes for every test.

    Static files: admin pages must render on a fresh checkout, where collectstatic has not
    run. With DEBUG off, settings.py serves static files through the manifest storage,
    which raises for every {% static %} tag until `manage.py collectstatic` has written
    its manifest; `make test` and CI never run it. The tests are about pages, not about
    hashed file names, so they use the plain storage.

    Password hashing: the production hasher takes a good part of a second per sign-in on
    purpose; the sign-in tests make hundreds.
    """
    storages = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    with override_settings(
        STORAGES=storages,
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    ):
        yield


@pytest.fixture
def staff_password() -> str:
    return STAFF_PASSWORD


@pytest.fixture
def admin_user(db, django_user_model):
    """An Admin (the group made by the migrations), replacing pytest-django's superuser."""
    return make_staff_user(django_user_model, "alice-admin", ADMIN)


@pytest.fixture
def manager_user(db, django_user_model):
    """A Social manager."""
    return make_staff_user(django_user_model, "sam-manager", SOCIAL_MANAGER)


@pytest.fixture
def admin_client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def manager_client(manager_user) -> Client:
    client = Client()
    client.force_login(manager_user)
    return client
