from pathlib import Path

import pytest
from django.contrib.auth.models import Group

from events.models import Event
from smsadmin.models import User
from smsadmin.roles import SOCIAL_MANAGER


@pytest.fixture(autouse=True)
def import_dir(settings, tmp_path: Path) -> Path:
    """Uploads and reports go to a fresh folder per test, never the worktree's var/."""
    folder = tmp_path / "imports"
    settings.IMPORT_DIR = folder
    # The manifest storage needs collectstatic; admin pages render without it here.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    return folder


@pytest.fixture
def csv_file(tmp_path: Path):
    """Write a small CSV file: text (encoded as asked) or raw bytes."""

    def write(content: str | bytes, *, name: str = "contacts.csv", encoding: str = "utf-8") -> Path:
        path = tmp_path / name
        data = content if isinstance(content, bytes) else content.encode(encoding)
        path.write_bytes(data)
        return path

    return write


@pytest.fixture
def event(db) -> Event:
    return Event.objects.create(name="Picnic", starts_at="2026-07-04T12:00:00Z")


@pytest.fixture
def manager(db) -> User:
    user = User.objects.create_user(username="sam", password="not-used-here-123")
    user.is_staff = True
    user.save()
    user.groups.add(Group.objects.get(name=SOCIAL_MANAGER))
    return user


@pytest.fixture
def manager_client(client, manager):
    client.force_login(manager)
    return client
