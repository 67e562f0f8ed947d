from __future__ import annotations

from django.core.management.base import BaseCommand

from messaging.services.scheduling import scheduled_dispatch


class Command(BaseCommand):
    help = (
        "Run one dispatch pass of the scheduler now, the one Celery beat runs every "
        "SCHEDULER_POLL_SECONDS: due scheduled blasts, repeats and event reminders are "
        "sent, late ones marked missed. Safe alongside beat (each blast goes once); for "
        "cron-style deployments and ops."
    )

    def handle(self, *args: object, **options: object) -> None:
        result = scheduled_dispatch()
        counts = result.as_dict()
        self.stdout.write(", ".join(f"{name.replace('_', ' ')}: {n}" for name, n in counts.items()))
