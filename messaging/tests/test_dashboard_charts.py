"""The admin index's last 30 days: messages sent, delivered and failed per day as an SVG
chart with its numbers in a table, opt-outs per day, the top failure codes with their
meaning, and the inbox's unhandled replies, in a bounded number of queries."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from messaging import twilio_errors
from messaging.charts import Series, bar_chart, nice_ceiling
from messaging.models import Delivery, InboundMessage
from messaging.services import blast_create
from messaging.tests.conftest import make_members, phone
from suppression.models import SuppressedContact, UnsubscribedContact

pytestmark = pytest.mark.django_db

S = Delivery.Status
INDEX = reverse("admin:index")
ZONE = "America/New_York"


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo(ZONE))


def title_day(day: date) -> str:
    return f"{day:%a} {day.day} {day:%b}"


def deliveries(n: int) -> list[Delivery]:
    make_members(n)
    blast = blast_create(body="Hello", community=True, name="History")
    return list(Delivery.objects.filter(blast=blast).order_by("id"))


def set_rows(rows: list[Delivery], **fields) -> None:
    Delivery.objects.filter(pk__in=[row.pk for row in rows]).update(**fields)


@pytest.fixture
def history(settings):
    """Deliveries on several days (one late in the evening, local time), failures with
    codes, opt-outs, an old row of each outside the 30 days, and inbox messages."""
    settings.TIME_ZONE = ZONE
    today = timezone.localdate(timezone.now(), ZoneInfo(ZONE))
    d1, d2, old = today - timedelta(days=2), today - timedelta(days=10), today - timedelta(days=40)
    rows = deliveries(12)
    set_rows(rows[0:4], status=S.SENT, sent_at=at(d1, 12))
    set_rows(rows[0:3], status=S.DELIVERED, delivered_at=at(d1 + timedelta(days=1), 9))
    set_rows(rows[4:5], status=S.SENT, sent_at=at(d2, 10))
    # 23:30 in New York is the next day in UTC: still d2 here.
    set_rows(rows[5:6], status=S.SENT, sent_at=at(d2, 23, 30))
    set_rows(rows[6:9], status=S.FAILED, error_code=21211, updated_at=at(d1, 13))
    set_rows(rows[9:10], status=S.FAILED, error_code=30003, updated_at=at(today, 0, 5))
    set_rows(rows[10:11], status=S.SENT, sent_at=at(old, 12))
    set_rows(rows[11:12], status=S.FAILED, error_code=30005, updated_at=at(old, 12))
    UnsubscribedContact.objects.create(phone=phone(100), created_at=at(d1, 8))
    UnsubscribedContact.objects.create(phone=phone(101), created_at=at(d1, 9), lifted=True)
    UnsubscribedContact.objects.create(phone=phone(102), created_at=at(old, 9))
    SuppressedContact.objects.create(phone=phone(103), created_at=at(d2, 9), error_code=21211)
    for i, (kind, handled) in enumerate(
        [("reply", False), ("reply", False), ("reply", True), ("stop", False)]
    ):
        InboundMessage.objects.create(
            message_sid=f"SM{i:032d}", phone=phone(200 + i), kind=kind, handled=handled
        )
    return {"today": today, "d1": d1, "d2": d2}


def table_row(day: date, *counts: int) -> str:
    cells = "".join(f"<td>{n}</td>" for n in counts)
    return f'<th scope="row">{title_day(day)}</th>{cells}'


def test_the_index_charts_the_messages_of_the_last_30_days(admin_client, history):
    today, d1, d2 = history["today"], history["d1"], history["d2"]

    response = admin_client.get(INDEX)

    page = response.content.decode()
    dash = response.context["activity"]["deliveries"]
    assert dash["totals"] == {"sent": 6, "delivered": 3, "failed": 4}
    by_day = {row.day: row.counts for row in dash["rows"]}
    assert len(by_day) == 30
    assert min(by_day) == today - timedelta(days=29)
    assert by_day[d1] == (4, 0, 3)
    assert by_day[d1 + timedelta(days=1)] == (0, 3, 0)
    assert by_day[d2] == (2, 0, 0)
    assert by_day[today] == (0, 0, 1)
    # The chart: an inline SVG with a title on each bar.
    chart = page[page.index('id="chart-deliveries"') :]
    chart = chart[: chart.index("</svg>")]
    assert "<svg" in page[page.index('id="chart-deliveries"') - 200 :][:200]
    assert f"<title>{title_day(d1)}: 4 sent</title>" in chart
    assert f"<title>{title_day(d1)}: 3 failed</title>" in chart
    assert f"<title>{title_day(d1 + timedelta(days=1))}: 3 delivered</title>" in chart
    assert f"<title>{title_day(d2)}: 2 sent</title>" in chart
    assert chart.count('<rect class="bar ') == 5
    assert "6 sent, 3 delivered, 4 failed" in chart
    # ... and the same numbers in a table under "The numbers".
    assert "<summary>The numbers</summary>" in page
    assert table_row(d1, 4, 0, 3) in page
    assert table_row(d2, 2, 0, 0) in page
    assert table_row(today, 0, 0, 1) in page
    assert "No messages in the last 30 days" not in page
    # Nothing the CSP would refuse.
    activity = page[page.index('id="activity-dashboard"') : page.index('id="failure-codes"')]
    assert "<script" not in activity
    assert " on" + "mouseover" not in activity


def test_the_top_failure_codes_say_what_they_mean(admin_client, history):
    response = admin_client.get(INDEX)

    codes = response.context["activity"]["failure_codes"]
    assert [(c.code, c.count) for c in codes] == [(21211, 3), (30003, 1)]
    page = response.content.decode()
    table = page[page.index('id="failure-codes"') :]
    table = table[: table.index("</table>")]
    assert escape(twilio_errors.meaning(21211)) in table
    assert "Invalid" in twilio_errors.meaning(21211)
    assert escape(twilio_errors.meaning(30003)) in table
    assert "30005" not in table  # failed 40 days ago
    link = (
        reverse("admin:messaging_delivery_changelist")
        + "?status__exact=failed&amp;error_code=21211"
    )
    assert f'href="{link}"' in table


def test_opt_outs_and_suppressions_per_day(admin_client, history):
    d1, d2 = history["d1"], history["d2"]

    response = admin_client.get(INDEX)

    opt_outs = response.context["activity"]["opt_outs"]
    assert opt_outs["totals"] == {"unsubscribed": 2, "suppressed": 1}
    assert [(row.day, row.counts) for row in opt_outs["rows"]] == [(d2, (0, 1)), (d1, (2, 0))]
    page = response.content.decode()
    chart = page[page.index('id="chart-opt-outs"') :]
    chart = chart[: chart.index("</svg>")]
    assert f"<title>{title_day(d1)}: 2 unsubscribed</title>" in chart
    assert f"<title>{title_day(d2)}: 1 suppressed</title>" in chart
    assert table_row(d1, 2, 0) in page


def test_the_unhandled_replies_are_counted_with_a_link_to_the_inbox(admin_client, history):
    response = admin_client.get(INDEX)

    page = response.content.decode()
    assert response.context["activity"]["replies"]["count"] == 2
    inbox = reverse("admin:messaging_inboundmessage_changelist")
    line = page[page.index('id="inbox-replies"') :]
    line = " ".join(line[: line.index("</p>")].split())
    assert f'href="{inbox}?handled__exact=0&amp;kind__exact=reply"' in line
    assert "<strong>2</strong> replies waiting in the inbox" in line
    # The link shows exactly those.
    listed = admin_client.get(f"{inbox}?handled__exact=0&kind__exact=reply")
    assert listed.context["cl"].result_count == 2


def test_an_empty_history_says_so_instead_of_an_empty_chart(admin_client):
    response = admin_client.get(INDEX)

    page = response.content.decode()
    assert "No messages in the last 30 days." in page
    assert "No opt-outs or suppressions in the last 30 days." in page
    assert "chart-deliveries" not in page
    assert 'class="chart"' not in page
    assert 'id="failure-codes"' not in page
    assert "No reply waiting in the inbox." in page


def test_staff_see_only_the_parts_they_may_view(django_user_model, history):
    user = django_user_model.objects.create_user(username="inbox", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_inboundmessage"))
    client = Client()
    client.force_login(user)

    activity = client.get(INDEX).context["activity"]

    assert set(activity) == {"days", "replies"}


def test_plain_staff_see_no_activity(django_user_model, history):
    user = django_user_model.objects.create_user(username="plain", password="x", is_staff=True)
    client = Client()
    client.force_login(user)
    response = client.get(INDEX)
    assert response.status_code == 200
    assert response.context["activity"] == {}
    assert 'id="activity-dashboard"' not in response.content.decode()


def test_the_activity_costs_the_same_queries_for_one_day_or_thirty(admin_client, settings):
    settings.TIME_ZONE = ZONE
    today = timezone.localdate(timezone.now(), ZoneInfo(ZONE))
    rows = deliveries(90)
    set_rows(rows[:1], status=S.SENT, sent_at=at(today, 1))
    with CaptureQueriesContext(connection) as one:
        admin_client.get(INDEX)
    for i, row in enumerate(rows[1:], start=1):
        day = today - timedelta(days=i % 30)
        if i % 3:
            set_rows([row], status=S.DELIVERED, sent_at=at(day, 9), delivered_at=at(day, 10))
        else:
            set_rows([row], status=S.FAILED, error_code=30000 + i, updated_at=at(day, 9))
        UnsubscribedContact.objects.create(phone=phone(1000 + i), created_at=at(day, 8))
        SuppressedContact.objects.create(phone=phone(2000 + i), created_at=at(day, 8))
        InboundMessage.objects.create(message_sid=f"SM{i:032d}", phone=phone(3000 + i))
    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(INDEX)
    assert len(many.captured_queries) <= len(one.captured_queries)
    activity = response.context["activity"]
    assert activity["deliveries"]["totals"]["sent"] == 61
    assert len(activity["failure_codes"]) == 5
    assert activity["replies"]["count"] == 89


# --- The chart helper ---------------------------------------------------------------------


def test_nice_ceiling_rounds_up_to_one_two_or_five():
    assert [nice_ceiling(n) for n in (0, 1, 3, 7, 12, 20, 21, 480, 501)] == [
        1,
        1,
        5,
        10,
        20,
        20,
        50,
        500,
        1000,
    ]


def test_bar_chart_escapes_its_text_and_scales_bars_to_the_axis():
    svg = bar_chart(
        ["a", "b<"],
        [Series("sent", "bar-sent", [5, 10]), Series("x&y", "bar-failed", [0, 2])],
        summary='Say "hi" <now>',
        label_every=1,
    )
    assert svg.startswith("<svg")
    assert svg.endswith("</svg>")
    assert 'aria-label="Say &quot;hi&quot; &lt;now&gt;"' in svg
    assert "<title>b&lt;: 10 sent</title>" in svg
    assert "<title>b&lt;: 2 x&amp;y</title>" in svg
    assert svg.count("<rect") == 3  # no bar for a zero
    assert ">10</text>" in svg  # the top of the y axis
    assert 'height="186"' in svg  # the tallest bar fills the plot (220 - 10 - 24)
