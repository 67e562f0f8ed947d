from django.contrib import admin

from messaging.models import Blast, Delivery, OutboxMessage
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
    readonly_fields = (
        "status",
        "status_reason",
        "recipient_count",
        "created_by",
        "created_at",
        "enqueued_at",
        "processing_started_at",
        "started_at",
        "finished_at",
        "updated_at",
    )

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
