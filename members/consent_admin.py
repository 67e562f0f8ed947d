"""Admin pieces for the consent fields shared by members and registrations."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.utils import timezone

from members.models import ConsentSource

CONSENT_FIELDS = ("consent_source", "consent_at", "consent_evidence", "consent_by")


class ConsentAdminMixin:
    """Shows how and when a contact agreed to be texted, and records it for staff entry.

    Adding a contact in the admin records consent as *entered by staff* (by the signed-in
    user, now) unless staff choose another source (a paper sign-up form, say). Once
    recorded, consent is read-only: it is evidence, not a setting. Contacts that predate
    consent records may have it filled in once.
    """

    consent_fieldset = ("Consent to be texted", {"fields": CONSENT_FIELDS})

    def get_readonly_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        readonly = [*super().get_readonly_fields(request, obj), "consent_by"]  # type: ignore[misc]
        if obj is not None and obj.consent_source:
            readonly += ["consent_source", "consent_at", "consent_evidence"]
        return readonly

    def get_changeform_initial_data(self, request):  # type: ignore[no-untyped-def]
        initial: dict[str, Any] = super().get_changeform_initial_data(request)  # type: ignore[misc]
        initial.setdefault("consent_source", ConsentSource.STAFF)
        return initial

    def save_model(self, request, obj, form, change):  # type: ignore[no-untyped-def]
        recorded_now = "consent_source" in form.changed_data or not change
        if recorded_now and obj.consent_source:
            obj.consent_by = request.user
            if obj.consent_at is None:
                obj.consent_at = timezone.now()
        super().save_model(request, obj, form, change)  # type: ignore[misc]

    @admin.display(description="consent", ordering="consent_at")
    def consent_summary(self, obj: Any) -> str:
        if not obj.consent_source:
            return "-"
        when = f" {timezone.localtime(obj.consent_at):%Y-%m-%d}" if obj.consent_at else ""
        return f"{obj.get_consent_source_display()}{when}"
