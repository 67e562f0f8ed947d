"""`manage.py send_blast --wait` waits a pause out: it says once that the blast paused, keeps
following it until it is sent (or cancelled), and stops at the pause only with --until-paused.

The command runs on the test's thread; another thread plays staff (or the quiet-hours
sweeper) and the worker, as the real programs would meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from messaging.models import Blast
from messaging.services.lifecycle import blast_cancel, blast_pause, blast_resume
from messaging.services.scheduling import quiet_paused_resume
from messaging.tests.conftest import in_thread, make_members, run_to_end

pytestmark = pytest.mark.django_db(transaction=True)

BODY = "Hi {first_name}, see you Saturday"


@pytest.fixture(autouse=True)
def no_quiet_hours(settings):
    settings.QUIET_HOURS = ""


class SharedOutput(StringIO):
    """The command's stdout, read by the other thread while the command writes it."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            return super().write(text)

    def text(self) -> str:
        with self.lock:
            return self.getvalue()


def wait_for(what: str, check: Callable[[], object], timeout: float = 15.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def the_new_blast() -> Blast:
    return wait_for(  # type: ignore[return-value]
        "the command to create its blast",
        lambda: Blast.objects.filter(status__in=[Blast.Status.QUEUED]).first(),
    )


def send_blast_waiting(out: SharedOutput, *args: str) -> None:
    call_command(
        "send_blast",
        "--audience",
        "community",
        "--body",
        BODY,
        "--wait",
        "--timeout",
        "60",
        *args,
        stdout=out,
    )


def test_a_pause_is_reported_once_and_waited_out_until_the_blast_is_sent() -> None:
    make_members(3)
    out = SharedOutput()
    errors: list[BaseException] = []

    def staff_and_worker() -> None:
        try:
            blast = the_new_blast()
            assert blast_pause(blast_id=blast.pk, reason="Paused by Sam")
            wait_for("the command to report the pause", lambda: "paused" in out.text())
            time.sleep(1.2)  # a few of the command's polls while it stays paused
            assert blast_resume(blast_id=blast.pk)
            run_to_end(blast)
        except BaseException as exc:
            errors.append(exc)

    helper = in_thread(staff_and_worker)
    send_blast_waiting(out)  # returns: exit status 0
    helper.join(timeout=30)
    assert errors == []

    text = out.getvalue()
    blast = Blast.objects.get()
    assert blast.status == Blast.Status.SENT
    notes = [line for line in text.splitlines() if line.startswith(f"Blast {blast.pk} paused")]
    assert notes == [
        f"Blast {blast.pk} paused: Paused by Sam. Still waiting until it is resumed and sent, "
        "or cancelled, on its page (Ctrl-C stops waiting, not the blast)."
    ]
    assert text.rstrip().endswith(f"Blast {blast.pk}: Sent.")
    assert "3/3 sent 3" in text


def test_until_paused_stops_at_the_pause_with_an_error() -> None:
    make_members(2)
    out = SharedOutput()

    def staff() -> None:
        blast_pause(blast_id=the_new_blast().pk, reason="Paused by Sam")

    helper = in_thread(staff)
    with pytest.raises(CommandError, match=r"is paused \(--until-paused stops waiting there\)"):
        send_blast_waiting(out, "--until-paused")
    helper.join(timeout=30)

    blast = Blast.objects.get()
    assert blast.status == Blast.Status.PAUSED
    assert f"Blast {blast.pk}: Paused." in out.getvalue()
    assert "Still waiting" not in out.getvalue()


def test_a_quiet_hours_pause_says_it_goes_on_by_itself_and_is_waited_out() -> None:
    make_members(2)
    out = SharedOutput()
    errors: list[BaseException] = []

    def quiet_hours_then_worker() -> None:
        try:
            blast = the_new_blast()
            blast_pause(
                blast_id=blast.pk,
                reason="Quiet hours (21:00-08:00): it goes on by itself at 08:00.",
                cause=Blast.PauseCause.QUIET,
            )
            wait_for("the command to report the pause", lambda: "paused" in out.text())
            # The hour passes: beat's sweeper sends it on, as it does after quiet hours.
            assert quiet_paused_resume() == [blast.pk]
            run_to_end(blast)
        except BaseException as exc:
            errors.append(exc)

    helper = in_thread(quiet_hours_then_worker)
    send_blast_waiting(out)
    helper.join(timeout=30)
    assert errors == []

    text = out.getvalue()
    blast = Blast.objects.get()
    assert blast.status == Blast.Status.SENT
    assert f"Blast {blast.pk} paused for quiet hours" in text
    assert "It goes on by itself when they end" in text
    assert text.rstrip().endswith(f"Blast {blast.pk}: Sent.")


def test_a_paused_blast_that_is_cancelled_ends_the_wait_with_an_error() -> None:
    make_members(2)
    out = SharedOutput()

    def staff() -> None:
        blast = the_new_blast()
        blast_pause(blast_id=blast.pk)
        wait_for("the command to report the pause", lambda: "paused" in out.text())
        blast_cancel(blast_id=blast.pk)

    helper = in_thread(staff)
    with pytest.raises(CommandError, match="ended cancelled"):
        send_blast_waiting(out)
    helper.join(timeout=30)
    assert Blast.objects.get().status == Blast.Status.CANCELLED


def test_until_paused_needs_wait() -> None:
    with pytest.raises(CommandError, match="--until-paused goes with --wait"):
        call_command("send_blast", "--audience", "community", "--body", BODY, "--until-paused")
