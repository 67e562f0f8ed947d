"""Who must not be texted, and why: opt-outs (unsubscribed), numbers that keep failing
(suppressed), and every failure fed through the classifier (failure events).

Both lists keep their history. Lifting an unsubscribe (a START keyword, JOIN, or an
Admin) or a suppression (an Admin, with a reason) marks the row lifted, with who, when
and why; the row stays. At most one *active* (not lifted) row exists per number and list,
and only active rows stop a send (``suppression.services.phone_blocked_q``). A number
that opts out or fails again after a lift gets a new row.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone

from smsadmin.phones import PhoneNumberField, phone_display


class UnsubscribedContact(models.Model):
    """A number whose owner asked not to be texted. No blast ever sends to it while active.

    Active while ``lifted`` is false. ``source`` says how the opt-out came: an inbound
    stop keyword (``evidence``: the keyword and the inbound message SID), the carrier or
    Twilio refusing with 21610 (``delivery``, ``blast``, ``message_sid``, ``error_code``),
    staff (``created_by`` and ``reason``), or an import. Re-subscribing lifts the row:
    ``lift_source`` says how (START/YES/UNSTOP, JOIN, staff), ``lifted_by`` who for staff.
    """

    class Source(models.TextChoices):
        KEYWORD = "keyword", "Replied with a stop keyword"
        CARRIER = "carrier", "Carrier reported an opt-out (21610)"
        MANUAL = "manual", "Added by staff"
        IMPORT = "import", "Imported"

    class LiftSource(models.TextChoices):
        KEYWORD = "keyword", "Replied with a start keyword (START, YES, UNSTOP)"
        JOIN = "join", "Replied JOIN"
        MANUAL = "manual", "Re-subscribed by an Admin"

    phone = PhoneNumberField()
    reason = models.CharField(max_length=255, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.MANUAL)
    evidence = models.CharField(
        max_length=255,
        blank=True,
        help_text="What proves it, such as the keyword and inbound message SID of the STOP.",
    )
    error_code = models.PositiveIntegerField(null=True, blank=True)
    delivery = models.ForeignKey(
        "messaging.Delivery",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The delivery Twilio refused with 21610 (carrier opt-outs).",
    )
    blast = models.ForeignKey(
        "messaging.Blast", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    message_sid = models.CharField("message SID", max_length=64, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField("unsubscribed", default=timezone.now)
    lifted = models.BooleanField("re-subscribed", default=False)
    lifted_at = models.DateTimeField("re-subscribed at", null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name="re-subscribed by",
    )
    lift_source = models.CharField(
        "re-subscribed how", max_length=16, choices=LiftSource.choices, blank=True
    )
    lift_reason = models.CharField("re-subscribe reason", max_length=255, blank=True)
    lift_evidence = models.CharField("re-subscribe evidence", max_length=255, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "unsubscribed contact"
        permissions = [("lift_unsubscribe", "Can re-subscribe an unsubscribed contact")]
        constraints = [
            models.UniqueConstraint(
                fields=["phone"],
                condition=models.Q(lifted=False),
                name="unsubscribe_one_active_per_phone",
            )
        ]
        # By phone for the send engine's check; by date for the dashboard's opt-outs.
        indexes = [models.Index(fields=["phone", "lifted"]), models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return phone_display(self.phone)


class SuppressedContact(models.Model):
    """A number we stopped texting because messages to it fail in a way that is its own.

    Active while ``lifted`` is false. Keeps the evidence of the failure that caused it:
    the code and its meaning, the delivery, the blast, the message SID and the time; for
    repeated transient failures, how many within the window. Lifting (Admins only, with
    a reason) keeps the row as history and lets blasts reach the number again; a new
    permanent failure suppresses it anew, in a new row.
    """

    phone = PhoneNumberField()
    reason = models.CharField(max_length=255, blank=True)
    error_code = models.PositiveIntegerField(null=True, blank=True)
    error_meaning = models.CharField(max_length=255, blank=True)
    failure_count = models.PositiveIntegerField(default=0)
    first_failed_at = models.DateTimeField(null=True, blank=True)
    last_failed_at = models.DateTimeField(null=True, blank=True)
    delivery = models.ForeignKey(
        "messaging.Delivery",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The delivery whose failure caused the suppression.",
    )
    blast = models.ForeignKey(
        "messaging.Blast", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    message_sid = models.CharField("message SID", max_length=64, blank=True)
    lifted = models.BooleanField(default=False)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    lifted_at = models.DateTimeField(null=True, blank=True)
    lift_reason = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField("suppressed", default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-last_failed_at", "-id"]
        verbose_name = "suppressed contact"
        permissions = [("lift_suppression", "Can lift a suppression")]
        constraints = [
            models.UniqueConstraint(
                fields=["phone"],
                condition=models.Q(lifted=False),
                name="suppression_one_active_per_phone",
            )
        ]
        indexes = [models.Index(fields=["lifted", "phone"]), models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return phone_display(self.phone)


class FailureEvent(models.Model):
    """One failed or undelivered message, as the classifier saw it: the evidence behind
    suppressions and the count of transient failures.

    At most one per attempt of a delivery (and per message SID), which is what makes
    recording a failure idempotent: a duplicated status callback or a second backfill run
    finds the event and changes nothing, while a message staff sent again (Retry failed,
    Send again) that fails too is a failure of its own.
    """

    class Action(models.TextChoices):
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed (carrier opt-out)"
        SUPPRESSED = "suppressed", "Suppressed"
        COUNTED = "counted", "Counted (transient, below the threshold)"
        NONE = "none", "Nothing done to the number"

    phone = PhoneNumberField()
    error_code = models.PositiveIntegerField(null=True, blank=True)
    error_meaning = models.CharField(max_length=255, blank=True)
    category = models.CharField(
        max_length=16, help_text="The code's class in the table: suppress, unsubscribe, ..."
    )
    action = models.CharField(max_length=16, choices=Action.choices)
    note = models.CharField(max_length=255, blank=True)
    delivery = models.ForeignKey(
        "messaging.Delivery",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    attempt = models.PositiveSmallIntegerField(
        default=0, help_text="The delivery's attempt that failed: 1 for its first message."
    )
    blast = models.ForeignKey(
        "messaging.Blast", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    message_sid = models.CharField("message SID", max_length=64, blank=True)
    failed_at = models.DateTimeField(default=timezone.now)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-failed_at", "-id"]
        verbose_name = "delivery failure"
        constraints = [
            models.UniqueConstraint(
                fields=["message_sid"],
                condition=~models.Q(message_sid=""),
                name="failureevent_unique_message_sid",
            ),
            models.UniqueConstraint(
                fields=["delivery", "attempt"],
                condition=models.Q(delivery__isnull=False),
                name="failureevent_unique_delivery_attempt",
            ),
        ]
        indexes = [models.Index(fields=["phone", "category", "failed_at"])]

    def __str__(self) -> str:
        return f"{phone_display(self.phone)} {self.error_code or ''} {self.action}".strip()
