"""manage.py backfill_suppressions [--dry-run] [--since DATE]"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date, datetime
from datetime import time as dtime
from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from messaging.twilio_errors import describe, number_action
from suppression.backfill import backfill

# Runs with at least this many failures to go show a progress bar.
PROGRESS_MIN = 1000
ACTIONS = ("unsubscribed", "suppressed", "counted", "none")


def since_date(text: str) -> datetime:
    """``2025-01-31`` (midnight, local time) or an ISO date-time."""
    try:
        if len(text.strip()) == 10:
            day = date.fromisoformat(text.strip())
            return timezone.make_aware(datetime.combine(day, dtime.min))
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date; write it as YYYY-MM-DD, e.g. 2025-01-31."
        ) from None
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


class Command(BaseCommand):
    help = (
        "Run every failed or undelivered delivery not yet classified through the error "
        "table: unsubscribe carrier opt-outs, suppress bad numbers and repeated transient "
        "failures. A second run changes nothing."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Show what would happen; write nothing."
        )
        parser.add_argument(
            "--since",
            type=since_date,
            metavar="DATE",
            help="Only deliveries that failed on or after this date (YYYY-MM-DD).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run: bool = options["dry_run"]
        started = time.monotonic()
        tty = sys.stdout.isatty()
        shown = {"last": -1}

        def progress(done: int, total: int) -> None:
            if total < PROGRESS_MIN:
                return
            width = 30
            filled = width * done // total
            percent = 100 * done // total
            if not tty and percent // 10 == shown["last"] // 10:
                return  # a line per 10% in logs
            shown["last"] = percent
            line = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
            self.stdout.write(("\r" + line) if tty else line, ending="" if tty else "\n")
            self.stdout.flush()

        summary = backfill(since=options["since"], dry_run=dry_run, on_progress=progress)
        if tty and shown["last"] >= 0:
            self.stdout.write("")

        out = self.stdout
        verb = "Would record" if dry_run else "Recorded"
        out.write(
            f"{verb} {summary.considered} failed or undelivered "
            f"deliver{'y' if summary.considered == 1 else 'ies'} "
            f"in {time.monotonic() - started:.1f} s."
            + (" Dry run: nothing was written." if dry_run else "")
        )
        if not summary.considered:
            out.write("Nothing to do: every failure is already recorded.")
            return
        out.write("By action:")
        for action in ACTIONS:
            out.write(f"  {action:<13}{summary.by_action.get(action, 0):>8}")
        out.write("By code:")
        codes = sorted(summary.by_code, key=lambda c: (c is None, c or 0))
        for code in codes:
            counts = summary.by_code[code]
            detail = ", ".join(f"{a} {counts[a]}" for a in ACTIONS if counts.get(a))
            out.write(f"  {describe(code)} [{number_action(code)}]: {detail}")
