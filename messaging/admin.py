from django.contrib import admin, messages
from django.utils.html import format_html_join

from messaging.models import Blast, Delivery, OutboxMessage
from messaging.services import blast_cancel, blast_pause, blast_resume
from smsadmin.admin_utils import FastChangeList, PhoneSearchMixin


@admin.register(Blast)
class BlastAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "status",
        "recipient_count",
        "created_by",
        "created_at",
        "scheduled_for",
        "finished_at",
    )
    list_filter = ("status", "audience_community")
    list_select_related = ("created_by",)
    search_fields = ("name", "body")
    filter_horizontal = ("audience_events",)
    actions = ["pause", "resume", "cancel"]
    readonly_fields = (
        "status",
        "status_reason",
        "progress",
        "recipient_count",
        "created_by",
        "created_at",
        "enqueued_at",
        "processing_started_at",
        "started_at",
        "finished_at",
        "updated_at",
    )

    @admin.display(description="deliveries")
    def progress(self, obj: Blast) -> str:
        counts = obj.counts()
        shown = [(label, counts[value]) for value, label in Delivery.Status.choices]
        return format_html_join(", ", "{}: {}", ((label, n) for label, n in shown if n)) or "-"

    def has_send_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return request.user.has_perm("messaging.send_blast")

    def _report(self, request, verb: str, done: int, total: int) -> None:  # type: ignore[no-untyped-def]
        text = f"{verb} {done} of {total} selected blast{'s' if total != 1 else ''}."
        if done < total:
            text += f" The other {total - done} could not be {verb.lower()} in their state."
        self.message_user(request, text, messages.SUCCESS if done else messages.WARNING)

    @admin.action(description="Pause selected blasts", permissions=["send"])
    def pause(self, request, queryset):  # type: ignore[no-untyped-def]
        ids = list(queryset.values_list("pk", flat=True))
        done = sum(blast_pause(blast_id=pk, reason=f"Paused by {request.user}") for pk in ids)
        self._report(request, "Paused", done, len(ids))

    @admin.action(description="Resume selected blasts", permissions=["send"])
    def resume(self, request, queryset):  # type: ignore[no-untyped-def]
        ids = list(queryset.values_list("pk", flat=True))
        done = sum(blast_resume(blast_id=pk) for pk in ids)
        self._report(request, "Resumed", done, len(ids))

    @admin.action(
        description="Cancel selected blasts (what is left is not sent)", permissions=["send"]
    )
    def cancel(self, request, queryset):  # type: ignore[no-untyped-def]
        ids = list(queryset.values_list("pk", flat=True))
        done = sum(
            blast_cancel(blast_id=pk, reason=f"Cancelled by {request.user}") is not None
            for pk in ids
        )
        self._report(request, "Cancelled", done, len(ids))

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        # A blast is created by the blast service (compose page, send_blast), which
        # also builds its recipient rows; a bare row from this form would have none.
        return False


@admin.register(Delivery)
class DeliveryAdmin(PhoneSearchMixin, FastChangeList, admin.ModelAdmin):
    list_display = (
        "phone",
        "full_name",
        "blast",
        "status",
        "skip_reason",
        "error_code",
        "twilio_sid",
        "sent_at",
    )
    list_filter = ("status", "skip_reason", "error_code")
    list_select_related = ("blast",)
    search_fields = ("=phone", "=twilio_sid", "last_name")
    raw_id_fields = ("blast", "event")
    readonly_fields = [f.name for f in Delivery._meta.fields]
    actions = ["export_csv"]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        # Rows come from creating a blast, never by hand.
        return False


@admin.register(OutboxMessage)
class OutboxMessageAdmin(PhoneSearchMixin, FastChangeList, admin.ModelAdmin):
    list_display = ("created_at", "to", "body", "error_code", "sid")
    list_filter = ("error_code",)
    search_fields = ("=to", "body", "=sid")
    phone_search_field = "to"
    readonly_fields = [f.name for f in OutboxMessage._meta.fields]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False
