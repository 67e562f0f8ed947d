"""The unsubscribed and suppressed lists, and the failures behind them.

Everyone with access sees the lists with their evidence; rows are records, so nobody
edits or deletes them. Social managers may add an unsubscribe (who and why are kept).
Lifting either list takes an Admin and a reason, and keeps the row as history.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from smsadmin.admin_utils import FastChangeList, PhoneSearchMixin, phone_column
from smsadmin.phones import phone_display
from suppression.models import FailureEvent, SuppressedContact, UnsubscribedContact
from suppression.services import LiftError, suppression_lift, unsubscribe_lift


def _links(obj: Any) -> str:
    """Links to the delivery and blast a row came from, and its message SID."""
    parts: list[tuple[str, str]] = []
    if obj.blast_id:
        url = reverse("admin:messaging_blast_change", args=[obj.blast_id])
        parts.append((url, f"blast #{obj.blast_id}"))
    if obj.delivery_id:
        url = reverse("admin:messaging_delivery_change", args=[obj.delivery_id])
        parts.append((url, f"delivery #{obj.delivery_id}"))
    html = format_html_join(", ", '<a href="{}">{}</a>', parts)
    if obj.message_sid:
        html = format_html("{}{}{}", html, ", " if parts else "", obj.message_sid)
    return html or "-"


class ActiveFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):  # type: ignore[no-untyped-def]
        return [("active", "Active"), ("lifted", "Lifted (history)")]

    def queryset(self, request, queryset):  # type: ignore[no-untyped-def]
        if self.value() == "active":
            return queryset.filter(lifted=False)
        if self.value() == "lifted":
            return queryset.filter(lifted=True)
        return queryset


class LiftActionMixin:
    """An action that asks for a reason, then lifts the selected rows (Admins only)."""

    lift_template = "admin/suppression/lift_confirmation.html"

    def _lift(  # type: ignore[no-untyped-def]
        self,
        request,
        queryset,
        *,
        action: str,
        noun: str,
        title: str,
        explanation: str,
        button: str,
        do,
    ):
        rows = list(queryset)
        active = [row for row in rows if not row.lifted]
        already = [row for row in rows if row.lifted]
        if not active:
            self.message_user(request, "Nothing to lift: already lifted.", messages.WARNING)  # type: ignore[attr-defined]
            return None
        reason = (request.POST.get("lift_reason") or "").strip()
        error = ""
        if request.POST.get("confirm") == "yes":
            try:
                count = do(active, request.user, reason)
            except LiftError as exc:
                error = str(exc)
            else:
                text = f"{button} {count} {noun}{'s' if count != 1 else ''}."
                if already:
                    text += f" {len(already)} were already lifted."
                self.message_user(request, text, messages.SUCCESS)  # type: ignore[attr-defined]
                return None
        context = {
            **self.admin_site.each_context(request),  # type: ignore[attr-defined]
            "title": title,
            "subtitle": None,
            "opts": self.opts,  # type: ignore[attr-defined]
            "explanation": explanation,
            "active": active,
            "already": already,
            "selected": rows,
            "action": action,
            "button": button,
            "reason": reason,
            "error": error,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        request.current_app = self.admin_site.name  # type: ignore[attr-defined]
        return TemplateResponse(request, self.lift_template, context)


class RecordAdmin(PhoneSearchMixin, FastChangeList, admin.ModelAdmin):
    """Rows are evidence: added (where allowed), viewed, lifted; never edited or deleted."""

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    add_form: type[forms.ModelForm] | None = None

    def get_form(self, request, obj=None, **kwargs):  # type: ignore[no-untyped-def]
        if obj is None and self.add_form is not None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        return () if obj is None else self.readonly_fields


class UnsubscribeAddForm(forms.ModelForm):
    class Meta:
        model = UnsubscribedContact
        fields = ("phone", "source", "reason", "evidence")

    source = forms.ChoiceField(
        choices=[
            (UnsubscribedContact.Source.MANUAL, UnsubscribedContact.Source.MANUAL.label),
            (UnsubscribedContact.Source.IMPORT, UnsubscribedContact.Source.IMPORT.label),
        ],
        initial=UnsubscribedContact.Source.MANUAL,
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reason"].required = True
        self.fields["reason"].help_text = "Why: e.g. 'asked by phone on 3 May'."

    def clean_phone(self) -> str:
        phone = self.cleaned_data["phone"]
        active = UnsubscribedContact.objects.filter(phone=phone, lifted=False).first()
        if active is not None:
            raise forms.ValidationError(
                f"{phone_display(phone)} is already unsubscribed (since {active.created_at:%Y-%m-%d}, "
                f"{active.get_source_display().lower()})."
            )
        return phone

    def validate_constraints(self) -> None:
        # clean_phone says it in words; a race ends in the constraint's own message.
        return


@admin.register(UnsubscribedContact)
class UnsubscribedContactAdmin(LiftActionMixin, RecordAdmin):
    list_display = (
        phone_column(),
        "active",
        "source",
        "reason",
        "evidence",
        "evidence_links",
        "created_by",
        "created_at",
        "lifted_at",
        "lift_reason",
    )
    list_filter = (ActiveFilter, "source", "lift_source")
    list_select_related = ("created_by",)
    search_fields = ("=phone", "reason", "evidence", "=message_sid")
    readonly_fields = (
        "phone",
        "source",
        "reason",
        "evidence",
        "error_code",
        "evidence_links",
        "created_by",
        "created_at",
        "lifted",
        "lifted_at",
        "lifted_by",
        "lift_source",
        "lift_reason",
        "lift_evidence",
    )
    add_form = UnsubscribeAddForm
    actions = ["resubscribe", "export_csv"]

    def get_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        if obj is None:
            return ("phone", "source", "reason", "evidence")
        return self.readonly_fields

    def save_model(self, request, obj, form, change):  # type: ignore[no-untyped-def]
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    @admin.display(description="active", boolean=True, ordering="lifted")
    def active(self, obj: UnsubscribedContact) -> bool:
        return not obj.lifted

    @admin.display(description="links")
    def evidence_links(self, obj: UnsubscribedContact) -> str:
        return _links(obj)

    @admin.action(
        description="Re-subscribe selected (texts may reach them again)", permissions=["lift"]
    )
    def resubscribe(self, request, queryset):  # type: ignore[no-untyped-def]
        return self._lift(
            request,
            queryset,
            action="resubscribe",
            noun="number",
            title="Re-subscribe these numbers?",
            explanation=(
                "These people asked not to be texted. Re-subscribe them only if they asked "
                "to be texted again; the opt-out stays in the history with your reason."
            ),
            button="Re-subscribed",
            do=lambda rows, user, reason: unsubscribe_lift(
                unsubscribes=rows, user=user, reason=reason
            ),
        )

    def has_lift_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("suppression.lift_unsubscribe")


class SuppressionAddForm(forms.ModelForm):
    class Meta:
        model = SuppressedContact
        fields = ("phone", "reason")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reason"].required = True

    def clean_phone(self) -> str:
        phone = self.cleaned_data["phone"]
        if SuppressedContact.objects.filter(phone=phone, lifted=False).exists():
            raise forms.ValidationError(f"{phone_display(phone)} is already suppressed.")
        return phone

    def validate_constraints(self) -> None:
        return


@admin.register(SuppressedContact)
class SuppressedContactAdmin(LiftActionMixin, RecordAdmin):
    list_display = (
        phone_column(),
        "active",
        "error_code",
        "error_meaning",
        "reason",
        "failure_count",
        "evidence_links",
        "last_failed_at",
        "lifted_by",
        "lifted_at",
        "lift_reason",
    )
    list_filter = (ActiveFilter, "error_code")
    list_select_related = ("lifted_by",)
    search_fields = ("=phone", "reason", "=message_sid")
    readonly_fields = (
        "phone",
        "reason",
        "error_code",
        "error_meaning",
        "failure_count",
        "first_failed_at",
        "last_failed_at",
        "evidence_links",
        "created_at",
        "lifted",
        "lifted_by",
        "lifted_at",
        "lift_reason",
    )
    add_form = SuppressionAddForm
    actions = ["lift", "export_csv"]

    def get_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        return ("phone", "reason") if obj is None else self.readonly_fields

    @admin.display(description="active", boolean=True, ordering="lifted")
    def active(self, obj: SuppressedContact) -> bool:
        return not obj.lifted

    @admin.display(description="evidence")
    def evidence_links(self, obj: SuppressedContact) -> str:
        return _links(obj)

    @admin.action(
        description="Lift selected suppressions (texts may reach them again)",
        permissions=["lift"],
    )
    def lift(self, request, queryset):  # type: ignore[no-untyped-def]
        return self._lift(
            request,
            queryset,
            action="lift",
            noun="suppression",
            title="Lift these suppressions?",
            explanation=(
                "Messages to these numbers failed in a way that is the number's own. "
                "Lift only if the number works now; if it fails permanently again it is "
                "suppressed again. The suppression stays in the history with your reason."
            ),
            button="Lifted",
            do=lambda rows, user, reason: suppression_lift(
                suppressions=rows, user=user, reason=reason
            ),
        )

    def has_lift_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("suppression.lift_suppression")


@admin.register(FailureEvent)
class FailureEventAdmin(RecordAdmin):
    list_display = (
        "failed_at",
        phone_column(),
        "error_code",
        "error_meaning",
        "category",
        "action",
        "note",
        "evidence_links",
    )
    list_filter = ("action", "category", "error_code")
    search_fields = ("=phone", "=message_sid")
    readonly_fields = (
        "phone",
        "error_code",
        "error_meaning",
        "category",
        "action",
        "note",
        "evidence_links",
        "failed_at",
        "recorded_at",
    )
    fields = readonly_fields

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    @admin.display(description="evidence")
    def evidence_links(self, obj: FailureEvent) -> str:
        return _links(obj)
