from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from messaging.models import Blast, Delivery, InboundMessage, OutboxMessage
from messaging.services import (
    blast_cancel,
    blast_pause,
    blast_resume,
    delivery_mark_sent,
    delivery_send_again,
)
from smsadmin.admin_utils import FastChangeList, PhoneSearchMixin, phone_column
from smsadmin.phones import phone_display

S = Delivery.Status
B = Blast.Status


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _needs_decision(queryset: QuerySet[Delivery]) -> QuerySet[Delivery]:
    """Rows whose outcome is unknown and that reconciliation handed to staff."""
    return queryset.filter(status=S.UNKNOWN).exclude(attention="")


class NeedsDecisionFilter(admin.SimpleListFilter):
    title = "needs a decision"
    parameter_name = "decision"
    ANY = "any"

    def lookups(self, request, model_admin):  # type: ignore[no-untyped-def]
        return [(self.ANY, "Yes, for any reason"), *Delivery.Attention.choices]

    def queryset(self, request, queryset):  # type: ignore[no-untyped-def]
        value = self.value()
        if value == self.ANY:
            return _needs_decision(queryset)
        if value in Delivery.Attention.values:
            return _needs_decision(queryset).filter(attention=value)
        return queryset


def _yes_no(value: bool, yes: str = "Yes", no: str = "No") -> str:
    return yes if value else no


def deliveries_needing_decision_url(blast_id: int) -> str:
    query = urlencode({"blast__id__exact": blast_id, NeedsDecisionFilter.parameter_name: "any"})
    return f"{reverse('admin:messaging_delivery_changelist')}?{query}"


@admin.register(Blast)
class BlastAdmin(admin.ModelAdmin):
    """Blasts are read-only here: they change only through the services (the actions).

    Nobody may edit a blast once it exists, not even an Admin: the text, audience and
    schedule are what the recipients got or will get, and the engine's own fields (status,
    canary, the current send task) belong to the engine. A save from the change form would
    also write back every column as it was read, over what a worker wrote meanwhile.
    """

    list_display = (
        "name_link",
        "status",
        "recipient_count",
        "needs_decision",
        "created_by",
        "created_at",
        "scheduled_for",
        "finished_at",
    )
    # The name opens the blast page (progress, controls, recipients); this read-only
    # change page stays reachable from there and by its own URL.
    list_display_links = None
    list_filter = ("status", "audience_community")
    list_select_related = ("created_by",)
    search_fields = ("name", "body")
    actions = ["pause", "resume", "cancel", "delete_selected"]
    fieldsets = (
        (
            None,
            {"fields": ("name", "body", "audience", "scheduled_for", "created_by", "created_at")},
        ),
        (
            "Progress",
            {
                "fields": (
                    "status",
                    "status_reason",
                    "progress",
                    "needs_decision",
                    "recipient_count",
                    "started_at",
                    "finished_at",
                )
            },
        ),
        (
            "Details",
            {
                "classes": ("collapse",),
                # The engine's bookkeeping, in plain words; the current send task's
                # token means nothing to a person and is left off.
                "fields": (
                    "why_paused",
                    "first_messages_checked",
                    "waiting_for_worker_since",
                    "last_worked_on",
                    "last_changed",
                ),
            },
        ),
    )
    readonly_fields = tuple(field for _, options in fieldsets for field in options["fields"])
    cancel_confirmation_template = "admin/messaging/blast/cancel_confirmation.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Blast]:
        # One correlated COUNT per blast shown, in the page's own query (no N+1), on the
        # (blast, status, id) index.
        waiting = (
            _needs_decision(Delivery.objects.filter(blast=OuterRef("pk")))
            .order_by()
            .values("blast")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(decisions_needed=Coalesce(Subquery(waiting, output_field=IntegerField()), 0))
        )

    # --- The engine's fields, in plain words -----------------------------------------------

    @admin.display(description="why it paused")
    def why_paused(self, obj: Blast) -> str:
        return obj.get_pause_cause_display() or "-"

    @admin.display(description="first messages checked")
    def first_messages_checked(self, obj: Blast) -> str:
        return _yes_no(
            obj.canary_passed,
            "Yes: the first messages went out without too many failures",
            "Not yet",
        )

    @admin.display(description="waiting to be picked up for sending since")
    def waiting_for_worker_since(self, obj: Blast):  # type: ignore[no-untyped-def]
        return obj.enqueued_at

    @admin.display(description="last worked on")
    def last_worked_on(self, obj: Blast):  # type: ignore[no-untyped-def]
        return obj.processing_started_at

    @admin.display(description="last changed")
    def last_changed(self, obj: Blast):  # type: ignore[no-untyped-def]
        return obj.updated_at

    # --- Read-only for everyone -----------------------------------------------------------

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        # A blast is created by the blast service (compose page, send_blast), which
        # also builds its recipient rows; a bare row from this form would have none.
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        # The change page is a view page for everyone; a POST to it is refused (403).
        return False

    # --- What the page shows --------------------------------------------------------------

    @admin.display(description="blast", ordering="name")
    def name_link(self, obj: Blast) -> str:
        return format_html('<a href="{}">{}</a>', reverse("messaging:blast", args=[obj.pk]), obj)

    @admin.display(description="audience")
    def audience(self, obj: Blast) -> str:
        parts = ["Community members"] if obj.audience_community else []
        parts += [f"Registrations for {event}" for event in obj.audience_events.all()]
        return "; ".join(parts) or "-"

    @admin.display(description="deliveries")
    def progress(self, obj: Blast) -> str:
        counts = obj.counts()
        shown = [(label, counts[value]) for value, label in Delivery.Status.choices]
        return format_html_join(", ", "{}: {}", ((label, n) for label, n in shown if n)) or "-"

    @admin.display(description="needs a decision", ordering="decisions_needed")
    def needs_decision(self, obj: Blast) -> str:
        n = getattr(obj, "decisions_needed", None)
        if n is None:
            n = _needs_decision(Delivery.objects.filter(blast_id=obj.pk)).count()
        if not n:
            return "-"
        return format_html(
            '<a href="{}">{}</a>', deliveries_needing_decision_url(obj.pk), _plural(n, "recipient")
        )

    # --- Actions: state changes go through the services -----------------------------------

    def has_send_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return request.user.has_perm("messaging.send_blast")

    def _report(self, request, verb: str, done: int, total: int, extra: str = "") -> None:  # type: ignore[no-untyped-def]
        text = f"{verb} {done} of {total} selected blast{'s' if total != 1 else ''}.{extra}"
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
        """First a page saying what would not be sent; only its confirm button cancels."""
        blasts = list(queryset.order_by("pk"))
        if request.POST.get("confirm"):
            done = not_texted = 0
            for blast in blasts:
                cancelled = blast_cancel(blast_id=blast.pk, reason=f"Cancelled by {request.user}")
                if cancelled is not None:
                    done += 1
                    not_texted += cancelled
            extra = f" {_plural(not_texted, 'recipient')} will not be texted." if done else ""
            self._report(request, "Cancelled", done, len(blasts), extra)
            return None

        to_cancel = [blast for blast in blasts if not blast.is_final]
        if not to_cancel:
            self.message_user(
                request,
                f"Nothing to cancel: the {_plural(len(blasts), 'selected blast')} "
                "already finished.",
                messages.WARNING,
            )
            return None
        waiting = dict(
            Delivery.objects.filter(blast_id__in=[b.pk for b in to_cancel], status=S.PENDING)
            .order_by()
            .values_list("blast_id")
            .annotate(n=Count("pk"))
        )
        rows = [(blast, waiting.get(blast.pk, 0)) for blast in to_cancel]
        context = {
            **self.admin_site.each_context(request),
            "title": "Cancel these blasts?",
            "subtitle": None,
            "opts": self.opts,
            "rows": rows,
            "not_texted": sum(n for _, n in rows),
            "finished": [blast for blast in blasts if blast.is_final],
            "selected": blasts,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.cancel_confirmation_template, context)

    # --- Deleting: finished blasts only ---------------------------------------------------

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        if obj is not None and not obj.is_final:
            return False
        return super().has_delete_permission(request, obj)

    def _not_finished_text(self, unfinished: list[Blast]) -> str:
        names = ", ".join(f"{blast} ({blast.get_status_display().lower()})" for blast in unfinished)
        return (
            f"{names} {'is' if len(unfinished) == 1 else 'are'} not finished. Cancel first, "
            "or wait until the sending is over; only finished blasts can be deleted."
        )

    def delete_view(self, request, object_id, extra_context=None):  # type: ignore[no-untyped-def]
        obj = self.get_object(request, unquote(object_id))
        if obj is not None and not obj.is_final and super().has_delete_permission(request, obj):
            self.message_user(
                request, f"Not deleted: {self._not_finished_text([obj])}", messages.ERROR
            )
            return HttpResponseRedirect(
                reverse(
                    "admin:messaging_blast_change", args=[obj.pk], current_app=self.admin_site.name
                )
            )
        return super().delete_view(request, object_id, extra_context)

    @admin.action(description="Delete selected blasts (finished ones only)", permissions=["delete"])
    def delete_selected(self, request, queryset):  # type: ignore[no-untyped-def]
        """Django's delete, with its confirmation page; refused whole if any is not finished."""
        unfinished = list(queryset.exclude(status__in=Blast.FINAL_STATUSES).order_by("pk"))
        if unfinished:
            self.message_user(
                request,
                f"Nothing was deleted: {self._not_finished_text(unfinished)}",
                messages.ERROR,
            )
            return None
        return django_delete_selected(self, request, queryset)

    def delete_model(self, request, obj) -> None:  # type: ignore[no-untyped-def]
        if obj.is_final:
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:  # type: ignore[no-untyped-def]
        # Final is final: a blast finished when checked is still finished now.
        pks = list(queryset.values_list("pk", flat=True))
        Blast.objects.filter(pk__in=pks, status__in=Blast.FINAL_STATUSES).delete()


@admin.register(Delivery)
class DeliveryAdmin(PhoneSearchMixin, FastChangeList, admin.ModelAdmin):
    list_display = (
        phone_column(),
        "full_name",
        "blast",
        "status",
        "attention",
        "skip_reason",
        "error_code",
        "twilio_sid",
        "sent_at",
    )
    list_filter = (NeedsDecisionFilter, "status", "skip_reason", "error_code")
    list_select_related = ("blast",)
    search_fields = ("=phone", "=twilio_sid", "last_name")
    raw_id_fields = ("blast", "event")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "blast",
                    "phone_number",
                    ("first_name", "last_name"),
                    "event",
                    "status",
                    "skip_reason",
                    "attention",
                    "body",
                    "error_code",
                    "error_message",
                    "sent_at",
                    "delivered_at",
                )
            },
        ),
        (
            "Details",
            {
                "classes": ("collapse",),
                # The engine's bookkeeping, in plain words; its claim token is left off.
                "fields": (
                    "twilio_sid",
                    "status_at_twilio",
                    "attempts",
                    "sender_refused",
                    "not_tried_before",
                    "last_picked_up",
                    "created_at",
                    "last_changed",
                ),
            },
        ),
    )
    readonly_fields = tuple(
        field
        for _, options in fieldsets
        for line in options["fields"]
        for field in (line if isinstance(line, tuple) else (line,))
    )
    actions = ["export_csv", "send_again", "mark_sent"]

    @admin.display(description="phone")
    def phone_number(self, obj: Delivery) -> str:
        return phone_display(obj.phone)

    @admin.display(description="last status Twilio reported")
    def status_at_twilio(self, obj: Delivery) -> str:
        return obj.twilio_status or "-"

    @admin.display(description="times Twilio refused the sender or account")
    def sender_refused(self, obj: Delivery) -> int:
        return obj.sender_refusals

    @admin.display(description="not tried again before")
    def not_tried_before(self, obj: Delivery):  # type: ignore[no-untyped-def]
        return obj.next_attempt_at

    @admin.display(description="last picked up for sending")
    def last_picked_up(self, obj: Delivery):  # type: ignore[no-untyped-def]
        return obj.claimed_at

    @admin.display(description="last changed")
    def last_changed(self, obj: Delivery):  # type: ignore[no-untyped-def]
        return obj.updated_at

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        # Rows come from creating a blast, never by hand.
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        # Rows change only through the engine and the decision actions; a save from the
        # form would write back every column as read, over what a worker wrote meanwhile.
        return False

    # A row is the record of who was texted: it goes only with its finished blast (whose
    # delete page still counts it), never on its own.
    def delete_view(self, request, object_id, extra_context=None):  # type: ignore[no-untyped-def]
        raise PermissionDenied

    def get_actions(self, request):  # type: ignore[no-untyped-def]
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_send_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return request.user.has_perm("messaging.send_blast")

    def _report(self, request, done: int, total: int, what: str) -> None:  # type: ignore[no-untyped-def]
        text = f"{done} of {_plural(total, 'selected row')} {what}."
        if done < total:
            text += (
                f" The other {total - done} {'was' if total - done == 1 else 'were'} not "
                "waiting for a decision (outcome not unknown, or already settled) and "
                "stayed as they were."
            )
        self.message_user(request, text, messages.SUCCESS if done else messages.WARNING)

    @admin.action(
        description="Send again (rows needing a decision: text them once more)",
        permissions=["send"],
    )
    def send_again(self, request, queryset):  # type: ignore[no-untyped-def]
        ids = list(queryset.values_list("pk", flat=True))
        done = delivery_send_again(delivery_ids=ids, user=request.user)
        self._report(
            request,
            done,
            len(ids),
            "will be sent again (rows of a cancelled blast were cancelled instead)",
        )

    @admin.action(
        description="Mark as sent (rows needing a decision: count them as texted)",
        permissions=["send"],
    )
    def mark_sent(self, request, queryset):  # type: ignore[no-untyped-def]
        ids = list(queryset.values_list("pk", flat=True))
        done = delivery_mark_sent(delivery_ids=ids, user=request.user)
        self._report(request, done, len(ids), "marked as sent")


@admin.register(OutboxMessage)
class OutboxMessageAdmin(PhoneSearchMixin, FastChangeList, admin.ModelAdmin):
    list_display = ("created_at", phone_column("to", "to"), "body", "error_code", "sid")
    list_filter = ("error_code",)
    search_fields = ("=to", "body", "=sid")
    phone_search_field = "to"
    fieldsets = (
        (None, {"fields": ("created_at", "to_number", "from_number", "body", "error_code")}),
        ("Details", {"classes": ("collapse",), "fields": ("sid", "status_updates_to")}),
    )
    readonly_fields = tuple(field for _, options in fieldsets for field in options["fields"])

    # What the console backend "sent" is a record: nobody adds, changes or deletes it
    # (data retention erases old numbers in it on its own).
    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    @admin.display(description="to")
    def to_number(self, obj: OutboxMessage) -> str:
        return phone_display(obj.to)

    @admin.display(description="status updates sent to")
    def status_updates_to(self, obj: OutboxMessage) -> str:
        return obj.status_callback or "-"


@admin.register(InboundMessage)
class InboundMessageAdmin(PhoneSearchMixin, FastChangeList, admin.ModelAdmin):
    """The inbox: what people texted us. Replies wait here until staff mark them handled;
    keywords (STOP, START, HELP, JOIN) acted on their own and arrive handled."""

    list_display = (
        "received_at",
        phone_column(description="from"),
        "sender",
        "body_excerpt",
        "kind",
        "blast",
        "handled",
    )
    list_display_links = ("received_at", "body_excerpt")
    list_filter = (
        "handled",
        "kind",
        ("blast", admin.RelatedOnlyFieldListFilter),
    )
    list_select_related = ("member", "registration__event", "blast")
    search_fields = ("=phone", "body", "member__last_name", "member__first_name", "=message_sid")
    date_hierarchy = "received_at"
    actions = ["mark_handled", "mark_not_handled"]
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "received_at",
                    "sender_number",
                    "member",
                    "registration",
                    "blast",
                    "body",
                    "media_links",
                    "kind",
                    "keyword",
                    "outcome",
                    "handled",
                    "handled_at",
                    "handled_by",
                )
            },
        ),
        ("Details", {"classes": ("collapse",), "fields": ("to_number", "message_sid")}),
    )
    readonly_fields = tuple(field for _, options in fieldsets for field in options["fields"])

    def get_queryset(self, request):  # type: ignore[no-untyped-def]
        return super().get_queryset(request).defer("media_urls")

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        # Rows come from Twilio's webhook only.
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        # Only the actions change a message (handled or not); the page is read-only.
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        # What people texted is kept: a STOP is the evidence of an opt-out.
        return False

    @admin.display(description="from")
    def sender_number(self, obj: InboundMessage) -> str:
        return phone_display(obj.phone)

    @admin.display(description="member or registration")
    def sender(self, obj: InboundMessage) -> str:
        if obj.member is not None:
            return str(obj.member)
        if obj.registration is not None:
            name = obj.registration.full_name or phone_display(obj.phone)
            return f"{name} ({obj.registration.event.name})"
        return ""

    @admin.display(description="message")
    def body_excerpt(self, obj: InboundMessage) -> str:
        text = " ".join(obj.body.split())
        return text if len(text) <= 120 else text[:119] + "…"

    @admin.display(description="media")
    def media_links(self, obj: InboundMessage):  # type: ignore[no-untyped-def]
        if not obj.media_urls:
            return "-"
        return format_html_join(
            mark_safe("<br>"),  # noqa: S308 - a constant
            '<a href="{}" rel="noreferrer noopener" target="_blank">{}</a>',
            ((url, url) for url in obj.media_urls if str(url).startswith("https://")),
        )

    @admin.action(description="Mark selected messages as handled", permissions=["change"])
    def mark_handled(self, request, queryset):  # type: ignore[no-untyped-def]
        now = timezone.now()
        done = queryset.filter(handled=False).update(
            handled=True, handled_at=now, handled_by=request.user
        )
        self.message_user(
            request, f"{_plural(done, 'message')} marked as handled.", messages.SUCCESS
        )

    @admin.action(description="Mark selected messages as not handled", permissions=["change"])
    def mark_not_handled(self, request, queryset):  # type: ignore[no-untyped-def]
        done = queryset.filter(handled=True).update(handled=False, handled_at=None, handled_by=None)
        self.message_user(
            request, f"{_plural(done, 'message')} marked as not handled.", messages.SUCCESS
        )


from messaging.recurrence_admin import RecurrenceAdmin  # noqa: E402,F401
