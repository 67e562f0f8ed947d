"""What import_members and import_registrations share: one importer, one summary."""

from __future__ import annotations

import argparse
import getpass
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from members.importing import (
    ImportConsent,
    ImportFileError,
    describe_columns,
    format_summary,
    import_apply,
    import_preview,
    inspect_file,
)


class ImportCommand(BaseCommand):
    pool: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("file", type=Path, help="The CSV file.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Show what would happen; write nothing."
        )
        parser.add_argument(
            "--errors",
            type=Path,
            metavar="CSV",
            help="Write every invalid or duplicate row, with its reason, to this file.",
        )

    def target(self, options: dict[str, Any]) -> tuple[int | None, str]:
        """The event the rows belong to (None for members), and a line naming it."""
        return None, ""

    def consent_evidence(self, path: Path) -> str:
        """What the contacts' consent record says: the file and who ran the command."""
        try:
            who = getpass.getuser()
        except (KeyError, OSError):
            who = "unknown"
        command = self.__module__.rsplit(".", 1)[-1]
        return f"{path.name} imported by {who} (manage.py {command})"

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        event_id, heading = self.target(options)
        started = time.monotonic()
        try:
            fmt = inspect_file(path=path)
            errors_path: Path | None = options["errors"]
            report = (
                errors_path.open("w", encoding="utf-8-sig", newline="") if errors_path else None
            )
            try:
                if options["dry_run"]:
                    summary = import_preview(
                        path=path, pool=self.pool, event_id=event_id, fmt=fmt, report=report
                    )
                else:
                    summary = import_apply(
                        path=path,
                        pool=self.pool,
                        event_id=event_id,
                        fmt=fmt,
                        report=report,
                        consent=ImportConsent(evidence=self.consent_evidence(path)),
                    )
            finally:
                if report:
                    report.close()
        except ImportFileError as exc:
            raise CommandError(f"{path}: {exc} Nothing was written.") from None
        except OSError as exc:
            raise CommandError(f"Cannot write {exc.filename}: {exc.strerror}.") from None

        out = self.stdout
        columns = describe_columns(fmt=fmt, pool=self.pool)
        if heading:
            out.write(heading)
        out.write(
            f"{path.name}: {summary.rows} rows ({fmt.encoding}, "
            f"delimiter {fmt.delimiter!r}) in {time.monotonic() - started:.1f} s."
        )
        used = ", ".join(f"{name} <- '{cell}'" for name, cell in columns["used"].items())
        out.write(f"Columns: {used}.")
        if columns["ignored"]:
            more = columns.get("ignored_more")
            out.write(
                "Ignored columns: "
                + ", ".join(f"'{c}'" for c in columns["ignored"])
                + (f" and {more} more" if more else "")
            )
        for line in format_summary(summary, applied=not options["dry_run"]):
            out.write(line)
        for problem in summary.problems:
            out.write(f"  line {problem.line}: {problem.kind}: {problem.reason}")
        hidden = summary.invalid + summary.duplicate - len(summary.problems)
        if hidden > 0:
            out.write(f"  ... and {hidden} more" + (" (see --errors)." if not report else "."))
        if options["dry_run"]:
            out.write("Dry run: nothing was written.")
