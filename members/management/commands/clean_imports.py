from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from members.cleanup import PREVIEW_KEEP, REPORT_KEEP, import_files_clean


class Command(BaseCommand):
    help = (
        f"Remove CSV import files nobody needs: previews not confirmed within "
        f"{PREVIEW_KEEP.days} day (the job is marked failed), uploads of finished imports, "
        f"problem reports older than {REPORT_KEEP.days} days. Job rows stay. Beat runs it daily."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be removed; change nothing."
        )

    def handle(self, *args: object, **options: object) -> None:
        dry_run = bool(options["dry_run"])
        counts = import_files_clean(dry_run=dry_run)
        verb, marked = (
            ("Would remove", "to be marked failed") if dry_run else ("Removed", "marked failed")
        )
        self.stdout.write(
            f"{verb} the files of {counts['abandoned_jobs']} abandoned import(s) "
            f"({marked}), {counts['uploads_removed']} upload(s), "
            f"{counts['reports_removed']} problem report(s) and "
            f"{counts['orphan_folders_removed']} folder(s) without an import."
        )
