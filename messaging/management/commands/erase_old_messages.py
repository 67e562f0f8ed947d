from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from messaging.services.retention import messages_erase_older


class Command(BaseCommand):
    help = (
        "Erase the texts and phone numbers of deliveries, inbound messages and outbox "
        "messages older than --days (default: RETENTION_DAYS). Statuses and counts stay; "
        "unsubscribes and suppressions are never touched. Beat runs it daily when "
        "RETENTION_DAYS is set."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, help="Age in days (default: RETENTION_DAYS).")
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be erased; change nothing."
        )

    def handle(self, *args: object, **options: object) -> None:
        days = options["days"] if options["days"] is not None else settings.RETENTION_DAYS
        if days is None:
            raise CommandError("Give --days N, or set RETENTION_DAYS.")
        if not isinstance(days, int) or days < 1:
            raise CommandError("--days must be 1 or more.")
        dry_run = bool(options["dry_run"])
        counts = messages_erase_older(days=days, dry_run=dry_run)
        verb = "Would erase" if dry_run else "Erased"
        parts = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items())
        self.stdout.write(f"{verb} messages older than {days} days: {parts}.")
