"""The admin index's starting point: compose, the latest blasts with their progress, and
the blasts waiting for approval, in a bounded number of queries."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from messaging.models import Blast, Delivery
from messaging.services import blast_create
from messaging.tests.conftest import make_members

pytestmark = pytest.mark.django_db

S = Delivery.Status
B = Blast.Status
INDEX = reverse("admin:index")


def make_blast(name: str, *, n: int = 4, start: int = 0, status: str | None = None) -> Blast:
    make_members(n, start=start)
    blast = blast_create(body="Hello", community=True, name=name)
    if status:
        Blast.objects.filter(pk=blast.pk).update(status=status)
    return blast


def page_url(blast: Blast) -> str:
    return reverse("messaging:blast", args=[blast.pk])


def test_a_manager_sees_compose_and_the_latest_blasts_with_progress(manager_client):
    blast = make_blast("Picnic news")
    Delivery.objects.filter(pk__in=Delivery.objects.filter(blast=blast).values("pk")[:3]).update(
        status=S.SENT
    )

    response = manager_client.get(INDEX)

    page = response.content.decode()
    assert f'href="{reverse("messaging:compose")}"' in page
    assert f'href="{page_url(blast)}"' in page
    assert "Picnic news" in page
    assert "Queued" in page
    assert "3 of 4" in page
    # The models list is still there below.
    assert reverse("admin:messaging_blast_changelist") in page


def test_blasts_waiting_for_approval_are_listed_with_links(admin_client):
    waiting = make_blast("Needs a yes", status=B.AWAITING_APPROVAL)
    make_blast("Already out", start=10, status=B.SENT)

    response = admin_client.get(INDEX)

    awaiting = response.context["dash"]["awaiting"]
    assert [b.pk for b in awaiting] == [waiting.pk]
    assert "Waiting for approval" in response.content.decode()
    assert f'href="{page_url(waiting)}"' in response.content.decode()


def test_only_the_latest_few_blasts_are_shown(admin_client):
    for i in range(12):
        make_blast(f"Blast {i}", n=1, start=i)
    recent = admin_client.get(INDEX).context["dash"]["recent"]
    assert len(recent) == 8
    assert recent[0][0].name == "Blast 11"


def test_without_send_blast_there_is_no_compose_button(django_user_model):
    make_blast("Picnic news")
    user = django_user_model.objects.create_user(username="viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_blast"))
    client = Client()
    client.force_login(user)
    page = client.get(INDEX).content.decode()
    assert "Picnic news" in page
    assert reverse("messaging:compose") not in page


def test_staff_who_may_not_view_blasts_see_no_blasts(django_user_model):
    make_blast("Picnic news")
    user = django_user_model.objects.create_user(username="plain", password="x", is_staff=True)
    client = Client()
    client.force_login(user)
    response = client.get(INDEX)
    assert response.status_code == 200
    assert "Picnic news" not in response.content.decode()


def test_the_index_costs_the_same_queries_for_one_blast_or_many(
    admin_client, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_blast("First", n=3)
    with CaptureQueriesContext(connection) as one:
        admin_client.get(INDEX)
    for i in range(1, 10):
        make_blast(f"More {i}", n=3, start=10 * i, status=B.AWAITING_APPROVAL if i % 2 else None)
    with django_assert_max_num_queries(len(one.captured_queries)):
        response = admin_client.get(INDEX)
    assert len(response.context["dash"]["recent"]) == 8
