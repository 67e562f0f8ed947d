from django.contrib import admin
from django.db.models import Count

from events.models import Event, Registration
from smsadmin.admin_utils import FastChangeList, PhoneSearchMixin


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("name", "starts_at", "location", "registration_count")
    list_filter = ("starts_at",)
    search_fields = ("name", "location")
    date_hierarchy = "starts_at"
    readonly_fields = ("created_at", "updated_at")

    def get_queryset(self, request):  # type: ignore[no-untyped-def]
        return super().get_queryset(request).annotate(_registrations=Count("registrations"))

    @admin.display(description="registrations", ordering="_registrations")
    def registration_count(self, obj: Event) -> int:
        return obj._registrations  # type: ignore[attr-defined]


@admin.register(Registration)
class RegistrationAdmin(PhoneSearchMixin, FastChangeList, admin.ModelAdmin):
    list_display = ("last_name", "first_name", "phone", "event", "created_at")
    list_display_links = ("last_name", "first_name")
    list_filter = ("event",)
    list_select_related = ("event",)
    search_fields = ("first_name", "last_name", "=phone", "event__name")
    autocomplete_fields = ("event",)
    readonly_fields = ("created_at",)
