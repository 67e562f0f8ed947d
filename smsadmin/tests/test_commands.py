"""Management commands, and migrations that match the models."""

import re
from io import StringIO

import pytest
from django.core.management import call_command

from smsadmin.models import User

pytestmark = pytest.mark.django_db


def ensure_admin(*args: str) -> str:
    out = StringIO()
    call_command("ensure_admin", *args, stdout=out)
    return out.getvalue()


def test_ensure_admin_creates_one_admin_and_prints_its_password():
    output = ensure_admin()

    match = re.search(r"Password:\s+(\S+)", output)
    assert match, output
    password = match.group(1)
    assert "User name: admin" in output

    user = User.objects.get()
    assert user.username == "admin"
    assert user.is_superuser and user.is_staff and user.is_active
    assert user.must_change_password is True
    assert [g.name for g in user.groups.all()] == ["Admin"]
    assert user.check_password(password)
    assert len(password) >= 12


def test_ensure_admin_password_lets_them_sign_in_then_forces_a_change(client):
    password = re.search(r"Password:\s+(\S+)", ensure_admin()).group(1)
    response = client.post("/admin/login/", {"username": "admin", "password": password})
    assert response.status_code == 302
    assert client.get("/admin/")["Location"] == "/admin/password_change/"


def test_ensure_admin_does_nothing_the_second_time():
    first = ensure_admin()
    user = User.objects.get()
    password_hash = user.password

    second = ensure_admin()

    assert User.objects.count() == 1
    assert User.objects.get().password == password_hash
    assert "Password" not in second
    assert "no account created" in second
    # The password appeared exactly once, in the first run.
    assert first.count("Password:") == 1


def test_ensure_admin_does_nothing_when_any_user_exists(manager_user):
    output = ensure_admin("--username", "boss")
    assert "Password" not in output
    assert not User.objects.filter(username="boss").exists()
    assert User.objects.count() == 1


def test_ensure_admin_takes_a_username():
    ensure_admin("--username", "boss")
    assert User.objects.get().username == "boss"


def test_each_fresh_install_gets_its_own_password():
    first = re.search(r"Password:\s+(\S+)", ensure_admin()).group(1)
    User.objects.all().delete()
    second = re.search(r"Password:\s+(\S+)", ensure_admin()).group(1)
    assert first != second


def test_migrations_match_the_models():
    # Exits with status 1 (SystemExit) when a model change has no migration.
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=StringIO())
    assert "No changes detected" in out.getvalue()
