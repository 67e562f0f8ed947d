import argparse
from typing import Any

from django.core.management.base import CommandError

from events.models import Event
from members.management.import_command import ImportCommand
from members.models import ImportJob


class Command(ImportCommand):
    help = (
        "Import one event's registrations from a CSV file: new phones are registered, "
        "known ones updated. Exits non-zero, writing nothing, when the file cannot be read."
    )
    pool = ImportJob.Pool.REGISTRATIONS

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--event", type=int, required=True, help="The event's id.")
        super().add_arguments(parser)

    def target(self, options: dict[str, Any]) -> tuple[int | None, str]:
        event = Event.objects.filter(pk=options["event"]).first()
        if event is None:
            raise CommandError(f"There is no event with id {options['event']}.")
        return event.pk, f"Event: {event}"
