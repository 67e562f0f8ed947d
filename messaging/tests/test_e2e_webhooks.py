"""End to end over HTTP: gunicorn serving the webhooks, a Celery worker sending, and the fake
Twilio (its own process) posting real signed status callbacks and inbound texts to gunicorn.

The deployment is the embedded default (SQLite, filesystem broker) in a temporary
VAR_DIR, like the other end-to-end tests; web, worker and the callbacks all write to the
same SQLite file at once. The fixtures come from test_e2e_processes.
"""

from __future__ import annotations

import socket
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import requests

from messaging.tests.processes import Services, shell_json, wait_for
from messaging.tests.test_e2e_processes import (  # noqa: F401 - fixtures
    create_members,
    good_members,
    log_dir,
    migrated_db,
    send_blast_wait,
    services,
    twilio_env,
    var_dir,
)

pytestmark = pytest.mark.slow

GUNICORN = str(Path(sys.executable).parent / "gunicorn")
HELP_REPLY = "Riverside Community: call 555-0100 to reach a person."


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_fake_twilio(started: Services) -> str:
    """The fake Twilio in its own process, calling back every message it accepts."""
    fake = started.start(
        "fake-twilio",
        [
            sys.executable,
            "-m",
            "messaging.tests.fake_twilio",
            "--port",
            "0",
            "--latency-ms",
            "5",
            "--status-callbacks",
            "--callback-delay-ms",
            "20",
        ],
    )
    return fake.wait_for_log(r"FAKE_TWILIO_URL=(\S+)", timeout=20).group(1)


def start_web(started: Services, port: int) -> None:
    """gunicorn as the Procfile starts it, on a port of its own, once it reports healthy."""
    web = started.web(port)

    def healthy() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_for("gunicorn to answer", healthy, timeout=30, describe=web.tail)


def inbound(fake_url: str, hook: str, sender: str, body: str) -> dict[str, Any]:
    """Ask the fake Twilio to deliver a text from ``sender`` to our inbound webhook."""
    response = requests.post(
        f"{fake_url}/_fake/inbound", json={"url": hook, "from": sender, "body": body}, timeout=15
    )
    response.raise_for_status()
    return response.json()


def twiml(answer: dict[str, Any]) -> list[str]:
    assert answer["status"] == 200, answer
    root = ET.fromstring(answer["body"])  # noqa: S314 - our own answer
    return [element.text or "" for element in root.iter("Message")]


def state(*, env: dict[str, str], log_dir: Path) -> dict[str, Any]:  # noqa: F811
    return shell_json(
        "from messaging.models import Blast, Delivery, InboundMessage\n"
        "from members.models import Member\n"
        "from suppression.models import SuppressedContact, UnsubscribedContact\n"
        "emit({\n"
        "    'blasts': {b.pk: b.status for b in Blast.objects.all()},\n"
        "    'rows': list(Delivery.objects.order_by('id').values(\n"
        "        'blast_id', 'phone', 'status', 'twilio_status', 'twilio_sid', 'error_code',\n"
        "        'delivered_at', 'skip_reason')),\n"
        "    'unsubscribed': sorted(UnsubscribedContact.objects.filter(lifted=False)\n"
        "        .values_list('phone', 'source')),\n"
        "    'suppressed': sorted(SuppressedContact.objects.filter(lifted=False)\n"
        "        .values_list('phone', 'error_code')),\n"
        "    'inbox': list(InboundMessage.objects.order_by('id').values(\n"
        "        'phone', 'body', 'kind', 'member__first_name', 'blast_id', 'handled')),\n"
        "    'members': list(Member.objects.order_by('id').values(\n"
        "        'phone', 'is_active', 'consent_source', 'consent_evidence')),\n"
        "})\n",
        env=env,
        log_dir=log_dir,
    )


def test_signed_callbacks_and_inbound_texts_reach_gunicorn_over_http(
    var_dir: Path,  # noqa: F811
    log_dir: Path,  # noqa: F811
    services: Services,  # noqa: F811
) -> None:
    fake_url = start_fake_twilio(services)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    hook = f"{base}/webhooks/twilio/inbound/"
    env = twilio_env(
        var_dir,
        fake_url,
        PUBLIC_BASE_URL=base,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SMS_RATE_PER_SECOND="50",
        SMS_HELP_REPLY=HELP_REPLY,
        SMS_JOIN_KEYWORD="JOIN",
    )
    services.env = env
    members = good_members(24)
    phones = [number for _, number in members]
    create_members(members, env=env, log_dir=log_dir)
    # What Twilio will report in the end for two of them.
    for number, status, code in ((phones[1], "undelivered", 30006), (phones[2], "failed", 21610)):
        requests.post(
            f"{fake_url}/_fake/outcome",
            json={"to": number, "status": status, "error_code": code},
            timeout=5,
        ).raise_for_status()
    start_web(services, port)
    services.worker()

    result = send_blast_wait("community", env=env, log_dir=log_dir)
    assert result.returncode == 0, f"{result}\n{services.tails()}"

    # Two callbacks per message (sent, then the final status), each answered 200.
    def all_called_back() -> list[dict[str, Any]] | None:
        callbacks = requests.get(f"{fake_url}/_fake/callbacks", timeout=5).json()["callbacks"]
        return callbacks if len(callbacks) >= 2 * len(phones) else None

    callbacks = wait_for(
        "every status callback", all_called_back, timeout=60, interval=0.5, describe=services.tails
    )
    assert len(callbacks) == 2 * len(phones), callbacks
    assert {c["status"] for c in callbacks} == {200}, [c for c in callbacks if c["status"] != 200]
    assert all(c["url"].startswith(f"{base}/webhooks/twilio/status/?d=") for c in callbacks)

    now = state(env=env, log_dir=log_dir)
    rows = {row["phone"]: row for row in now["rows"]}
    assert rows[phones[1]]["status"] == "failed" and rows[phones[1]]["error_code"] == 30006
    assert rows[phones[2]]["status"] == "failed" and rows[phones[2]]["error_code"] == 21610
    delivered = [row for row in now["rows"] if row["status"] == "delivered"]
    assert len(delivered) == len(phones) - 2, now["rows"]
    assert all(row["delivered_at"] and row["twilio_status"] == "delivered" for row in delivered)
    # Failures reported while it was still sending count against it.
    assert now["blasts"]["1"] in ("sent", "partially_failed"), now
    assert now["suppressed"] == [[phones[1], 30006]]
    assert now["unsubscribed"] == [[phones[2], "carrier"]]

    # People text back.
    assert twiml(inbound(fake_url, hook, phones[3], "Stop.")) == []
    assert twiml(inbound(fake_url, hook, phones[4], "HELP")) == [HELP_REPLY]
    assert twiml(inbound(fake_url, hook, phones[5], "Thanks, see you Saturday!")) == []
    [welcome] = twiml(inbound(fake_url, hook, "+12025550199", "join"))
    assert "STOP" in welcome
    # A request that is not Twilio's changes nothing.
    forged = requests.post(hook, data={"From": phones[6], "Body": "STOP"}, timeout=5)
    assert forged.status_code == 403

    now = state(env=env, log_dir=log_dir)
    assert now["unsubscribed"] == sorted([[phones[2], "carrier"], [phones[3], "keyword"]])
    reply = [m for m in now["inbox"] if m["kind"] == "reply"]
    assert reply == [
        {
            "phone": phones[5],
            "body": "Thanks, see you Saturday!",
            "kind": "reply",
            "member__first_name": members[5][0],
            "blast_id": 1,
            "handled": False,
        }
    ]
    [joined] = [m for m in now["members"] if m["phone"] == "+12025550199"]
    assert joined["is_active"] and joined["consent_source"] == "keyword"

    # The next blast skips who opted out or was suppressed, and reaches the new member.
    result = send_blast_wait("community", env=env, log_dir=log_dir)
    assert result.returncode == 0, f"{result}\n{services.tails()}"
    now = state(env=env, log_dir=log_dir)
    second = {row["phone"]: row for row in now["rows"] if row["blast_id"] == 2}
    assert second[phones[1]]["skip_reason"] == "suppressed"
    assert second[phones[2]]["skip_reason"] == "unsubscribed"
    assert second[phones[3]]["skip_reason"] == "unsubscribed"
    assert second["+12025550199"]["status"] in ("sent", "delivered")
    assert {row["status"] for row in second.values()} <= {"sent", "delivered", "skipped"}
    stats = requests.get(f"{fake_url}/_fake/stats", timeout=5).json()
    assert stats["per_to"][phones[3]] == 1 and stats["per_to"]["+12025550199"] == 1
