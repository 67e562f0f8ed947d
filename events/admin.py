from typing import Any

from django.contrib import admin
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse

from events.models import Event, Registration
from members.admin import TagActionsMixin
from members.consent_admin import ConsentAdminMixin
from members.import_admin import can_import, upload_view
from members.models import ImportJob
from smsadmin.admin_utils import FastChangeList, PhoneSearchMixin, phone_column

# The event page lists this many registrations and links to the rest.
SHOWN_REGISTRATIONS = 100


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("name", "starts_at", "location", "registration_count")
    list_filter = ("starts_at",)
    search_fields = ("name", "location")
    date_hierarchy = "starts_at"
    readonly_fields = ("created_at", "updated_at")

    def get_queryset(self, request):  # type: ignore[no-untyped-def]
        return super().get_queryset(request).annotate(_registrations=Count("registrations"))

    def get_urls(self):  # type: ignore[no-untyped-def]
        return [
            path(
                "<int:event_id>/import/",
                self.admin_site.admin_view(self.import_view),
                name="events_event_import",
            ),
            *super().get_urls(),
        ]

    def import_view(self, request: HttpRequest, event_id: int) -> HttpResponse:
        event = get_object_or_404(Event, pk=event_id)
        return upload_view(
            request, model_admin=self, pool=ImportJob.Pool.REGISTRATIONS, event=event
        )

    import_view.csrf_exempt = True  # type: ignore[attr-defined]  # upload_view checks it

    def change_view(self, request, object_id, form_url="", extra_context=None):  # type: ignore[no-untyped-def]
        extra_context = {
            "can_import": can_import(request.user, ImportJob.Pool.REGISTRATIONS),
            **self._registrations_context(request, object_id),
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def _registrations_context(self, request: HttpRequest, object_id: str) -> dict[str, Any]:
        """The event's registrations for its page: a count and the first ones, tags included.

        Three queries whatever the size of the event (count, rows, their tags).
        """
        if not str(object_id).isdigit():
            return {}
        event_id = int(object_id)
        registrations = Registration.objects.filter(event_id=event_id)
        count = registrations.count()
        shown = list(registrations.prefetch_related("tags")[:SHOWN_REGISTRATIONS])
        context: dict[str, Any] = {
            "event_id": event_id,
            "registration_count": count,
            "registrations_shown": shown,
            "registrations_url": reverse("admin:events_registration_changelist")
            + f"?event__id__exact={event_id}",
        }
        if request.user.has_perm("messaging.send_blast"):
            context["compose_url"] = reverse("messaging:compose") + f"?event={event_id}"
        return context

    @admin.display(description="registrations", ordering="_registrations")
    def registration_count(self, obj: Event) -> int:
        return obj._registrations  # type: ignore[attr-defined]


@admin.register(Registration)
class RegistrationAdmin(
    TagActionsMixin, ConsentAdminMixin, PhoneSearchMixin, FastChangeList, admin.ModelAdmin
):
    list_display = (
        "last_name",
        "first_name",
        phone_column(),
        "event",
        "tag_list",
        "consent_summary",
        "created_at",
    )
    list_display_links = ("last_name", "first_name")
    list_filter = ("event", "tags", "consent_source")
    list_select_related = ("event",)
    search_fields = ("first_name", "last_name", "=phone", "event__name")
    autocomplete_fields = ("event", "tags")
    readonly_fields = ("created_at",)
    actions = ["export_csv", "tag_add_action", "tag_remove_action"]

    def changelist_view(self, request, extra_context=None):  # type: ignore[no-untyped-def]
        """Importing happens on an event's page: the list links there (its object tools)."""
        context: dict[str, Any] = {}
        if can_import(request.user, ImportJob.Pool.REGISTRATIONS):
            event_id = request.GET.get("event__id__exact", "")
            event = Event.objects.filter(pk=int(event_id)).first() if event_id.isdigit() else None
            context = {"can_import": True, "import_event": event}
        return super().changelist_view(request, {**context, **(extra_context or {})})
