import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from messaging.models import Blast, Delivery
from messaging.services import blast_create
from messaging.tests.conftest import make_members

URL = reverse("admin:messaging_blast_changelist")


def act(client, action, blast, **extra):
    data = {"action": action, "_selected_action": [blast.pk], **extra}
    return client.post(URL, data, follow=True)


@pytest.mark.django_db
def test_manager_pauses_resumes_and_cancels_from_the_blast_list(manager_client):
    make_members(3)
    blast = blast_create(body="Hello", community=True)

    response = act(manager_client, "pause", blast)
    assert "Paused 1 of 1 selected blast." in response.content.decode()
    blast.refresh_from_db()
    assert blast.status == Blast.Status.PAUSED

    act(manager_client, "resume", blast)
    blast.refresh_from_db()
    assert blast.status == Blast.Status.QUEUED

    response = act(manager_client, "cancel", blast, confirm="yes")
    assert "Cancelled 1 of 1" in response.content.decode()
    blast.refresh_from_db()
    assert blast.status == Blast.Status.CANCELLED
    assert set(Delivery.objects.filter(blast=blast).values_list("status", flat=True)) == {
        "cancelled"
    }

    response = act(manager_client, "pause", blast)
    assert "could not be paused" in response.content.decode()


@pytest.mark.django_db
def test_blast_page_shows_counts_from_its_rows(admin_client):
    make_members(4)
    blast = blast_create(body="Hello", community=True)
    response = admin_client.get(reverse("admin:messaging_blast_change", args=[blast.pk]))
    assert "Pending: 4" in response.content.decode()


@pytest.mark.django_db
def test_staff_without_the_send_permission_get_no_blast_actions(django_user_model):
    user = django_user_model.objects.create_user(username="viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_blast"))
    client = Client()
    client.force_login(user)
    make_members(1)
    blast = blast_create(body="Hello", community=True)
    response = client.get(URL)
    assert response.status_code == 200
    assert 'value="pause"' not in response.content.decode()
    act(client, "pause", blast)
    blast.refresh_from_db()
    assert blast.status == Blast.Status.QUEUED
