from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = "Messaging"

    def ready(self) -> None:
        from django.db.models.signals import post_save, pre_delete

        from events.models import Event
        from messaging.services.scheduling import event_reminders_cancel, event_reminders_follow

        # An event moved in the admin (or anywhere it is saved): its reminders move too.
        post_save.connect(
            event_reminders_follow, sender=Event, dispatch_uid="messaging-reminders-follow"
        )
        # An event deleted: its reminders not sent yet never will be.
        pre_delete.connect(
            event_reminders_cancel, sender=Event, dispatch_uid="messaging-reminders-cancel"
        )
