from __future__ import annotations

import sys
import time

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count

from members.models import Tag
from messaging.models import Blast, Delivery
from messaging.services import BlastError, blast_create

S = Delivery.Status


def _audience(values: list[str]) -> tuple[bool, list[int]]:
    community = False
    event_ids: list[int] = []
    for value in values:
        if value == "community":
            community = True
        elif value.startswith("event:") and value[6:].isdigit():
            event_ids.append(int(value[6:]))
        else:
            raise CommandError(
                f"--audience {value!r} is not understood: use 'community' or 'event:<id>'."
            )
    return community, event_ids


def _tags(names: list[str]) -> list[int]:
    ids = []
    for name in names:
        tag = Tag.objects.filter(name__iexact=name.strip()).first()
        if tag is None:
            known = ", ".join(Tag.objects.values_list("name", flat=True)[:30]) or "none yet"
            raise CommandError(f"No tag named {name!r}. Tags: {known}.")
        ids.append(tag.pk)
    return ids


class Command(BaseCommand):
    help = (
        "Create a blast the way the compose page (/compose/) does, with no approval step, "
        "and hand it to the workers."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--audience",
            action="append",
            required=True,
            help="'community' (all active members) or 'event:<id>' (its registrations); repeatable.",
        )
        parser.add_argument(
            "--tag",
            action="append",
            default=[],
            help="With --audience community: only members having any of these tags; repeatable.",
        )
        parser.add_argument("--body", required=True, help="The text, with {placeholders}.")
        parser.add_argument("--name", default="", help="A name for staff (optional).")
        parser.add_argument(
            "--wait",
            action="store_true",
            help="Show progress until the blast finishes; exit non-zero if it failed or paused.",
        )
        parser.add_argument(
            "--timeout", type=float, default=0, help="With --wait: give up after N seconds."
        )

    def handle(self, *args: object, **options: object) -> None:
        community, event_ids = _audience(options["audience"])  # type: ignore[arg-type]
        tag_ids = _tags(options["tag"])  # type: ignore[arg-type]
        try:
            blast = blast_create(
                body=str(options["body"]),
                community=community,
                event_ids=event_ids,
                tag_ids=tag_ids,
                name=str(options["name"]),
            )
        except BlastError as exc:
            raise CommandError(str(exc)) from None
        counts = blast.counts()
        skipped = counts[S.SKIPPED]
        line = f"Blast {blast.pk} created: {blast.recipient_count} recipients"
        if skipped:
            reasons = dict(
                Delivery.objects.filter(blast=blast, status=S.SKIPPED)
                .values_list("skip_reason")
                .annotate(n=Count("id"))
            )
            detail = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
            line += f" ({skipped} skipped: {detail})"
        self.stdout.write(line + ".")
        if blast.enqueued_at is None:
            self.stdout.write(
                "The task queue cannot be reached right now. The blast is saved and will "
                "go out within a minute or two of it coming back."
            )
        if options["wait"]:
            self._wait(blast, float(options["timeout"]))  # type: ignore[arg-type]

    def _wait(self, blast: Blast, timeout: float) -> None:
        started = time.monotonic()
        tty = sys.stdout.isatty()
        last_line = ""
        while True:
            blast.refresh_from_db()
            counts = blast.counts()
            addressable = counts["total"] - counts[S.SKIPPED]
            done = addressable - counts[S.PENDING] - counts[S.SENDING]
            width = 30
            filled = int(width * done / addressable) if addressable else width
            line = (
                f"[{'#' * filled}{'.' * (width - filled)}] {done}/{addressable} "
                f"sent {counts[S.SENT] + counts[S.DELIVERED]}, failed {counts[S.FAILED]}, "
                f"unknown {counts[S.UNKNOWN]}, cancelled {counts[S.CANCELLED]} - {blast.get_status_display()}"
            )
            if line != last_line:
                self.stdout.write(("\r" + line) if tty else line, ending="" if tty else "\n")
                self.stdout.flush()
                last_line = line
            if blast.is_final or blast.status == Blast.Status.PAUSED:
                break
            if timeout and time.monotonic() - started > timeout:
                if tty:
                    self.stdout.write("")
                raise CommandError(
                    f"Still {blast.get_status_display().lower()} after {timeout:g}s."
                )
            time.sleep(0.5)
        if tty:
            self.stdout.write("")
        self.stdout.write(f"Blast {blast.pk}: {blast.get_status_display()}.")
        if blast.status_reason:
            self.stdout.write(blast.status_reason)
        if blast.status in (Blast.Status.FAILED, Blast.Status.PAUSED, Blast.Status.CANCELLED):
            raise CommandError(f"Blast {blast.pk} ended {blast.get_status_display().lower()}.")
