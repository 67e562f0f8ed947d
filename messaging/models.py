from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Count

from smsadmin.phones import PhoneNumberField, phone_display


class Blast(models.Model):
    """One message to an audience, from compose to finish (scheduled blasts included).

    State machine::

        preparing --(every recipient row written)--> queued
        (a blast to send later is created scheduled, with no rows: they are written from
        the audience as it is when it is due)
        scheduled --(due; claimed by a dispatch pass, stamping processing_started_at)-->
            dispatching
        dispatching --(every recipient row written from the audience as it is now)--> queued
        dispatching --(no progress for SCHEDULER_STALE_MINUTES: the pass
            died)--> dispatching (claimed again; rows already written are kept, and rows
            are unique per phone)
        dispatching --(nobody left to text)--> failed
        scheduled --(found more than SCHEDULE_GRACE_MINUTES late)--> missed
        missed --(an Admin or its author sends it now)--> scheduled (due at once)
        missed --(cancel)--> cancelled
        preparing --(every row written, and a Social manager's blast is larger than
            BLAST_APPROVAL_THRESHOLD; for a blast to send later, its audience counted and
            no row written yet)--> awaiting_approval
        scheduled <--> awaiting_approval (a blast to send later edited above or below the
            threshold)
        scheduled --(a reminder that comes due after its event started)--> missed
        missed --(a reminder's event moved later)--> scheduled
        scheduled | awaiting_approval | missed --(a reminder's event deleted)--> cancelled
        awaiting_approval --(an Admin other than its author approves)--> queued | scheduled
        awaiting_approval --(an Admin rejects it, or its author withdraws it)--> rejected
        preparing --(creation failed, or the sweeper found it abandoned)--> (removed)
        queued --(a worker takes the current send task)--> sending
        sending --(no row left pending, in flight or unknown)--> sent | partially_failed | failed
        queued | sending --(paused by staff, or by the engine: the sender or account was
            refused, the canary failed, Twilio stopped answering, a run of one
            error code)--> paused
        paused --(resume)--> queued
        paused --(its last sends finished and nothing is left)--> sent | partially_failed | failed
        queued | sending --(quiet hours began, and the blast was not allowed to send in
            them)--> paused (cause quiet) --(quiet hours ended)--> queued
        scheduled | missed | dispatching | queued | sending | paused --(cancel)--> cancelled
        sent | partially_failed | failed | sending --(staff retry the rows that failed for
            a reason that may pass now)--> queued (a paused blast stays paused)

    sent: every addressed row was accepted by Twilio; failed: none was;
    partially_failed: some were not. Rows, not this status, are the truth about
    who got what: the counts are always derived from the Delivery rows.
    """

    class Status(models.TextChoices):
        PREPARING = "preparing", "Preparing"
        AWAITING_APPROVAL = "awaiting_approval", "Waiting for approval"
        SCHEDULED = "scheduled", "Scheduled"
        DISPATCHING = "dispatching", "Starting"
        MISSED = "missed", "Missed (not sent)"
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        PAUSED = "paused", "Paused"
        SENT = "sent", "Sent"
        PARTIALLY_FAILED = "partially_failed", "Partially failed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        REJECTED = "rejected", "Rejected"

    ACTIVE_STATUSES = (Status.QUEUED, Status.SENDING)
    FINAL_STATUSES = (
        Status.SENT,
        Status.PARTIALLY_FAILED,
        Status.FAILED,
        Status.CANCELLED,
        Status.REJECTED,
    )

    name = models.CharField(max_length=200, blank=True)
    body = models.TextField(
        help_text="Placeholders: {first_name} {last_name} {full_name} {event_name} "
        "{event_date} {event_location} {org_name}"
    )
    audience_community = models.BooleanField(
        "community members", default=False, help_text="Every active member."
    )
    audience_events = models.ManyToManyField(
        "events.Event",
        blank=True,
        related_name="blasts",
        verbose_name="event registrations",
    )
    audience_tags = models.ManyToManyField(
        "members.Tag",
        blank=True,
        related_name="blasts",
        verbose_name="member tags",
        help_text="Community members narrowed to those having any of these tags.",
    )
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    status_reason = models.TextField(
        blank=True, help_text="Why the blast paused, failed or was cancelled."
    )

    class PauseCause(models.TextChoices):
        STAFF = "staff", "Paused by staff"
        SENDER = "sender", "Twilio refused the sender or account"
        CANARY = "canary", "Too many of the first messages failed"
        NO_ANSWER = "twilio", "Twilio was not answering"
        ERROR_RUN = "errors", "Many messages in a row failed the same way"
        QUIET = "quiet", "Quiet hours"

    pause_cause = models.CharField(max_length=10, choices=PauseCause.choices, blank=True)
    canary_passed = models.BooleanField(
        default=False,
        help_text="The first recipients went out without too many failures "
        "(or staff resumed the blast after a canary pause).",
    )
    recipient_count = models.PositiveIntegerField(
        default=0, help_text="Rows created at compose time, skipped ones included."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="blasts",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    idempotency_key = models.UUIDField(
        null=True,
        blank=True,
        unique=True,
        help_text="From the compose form: the same form sent twice makes one blast.",
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name="approved or rejected by",
    )
    reviewed_at = models.DateTimeField("approved or rejected at", null=True, blank=True)
    review_note = models.TextField(
        blank=True, help_text="The Admin's note on approving or rejecting."
    )
    scheduled_for = models.DateTimeField(null=True, blank=True)
    quiet_hours_override = models.BooleanField(
        "may send in quiet hours",
        default=False,
        help_text="Staff chose to send (or keep sending) inside quiet hours.",
    )
    remind_event = models.ForeignKey(
        "events.Event",
        null=True,
        blank=True,
        # A reminder already sent stays on record; one not sent yet is cancelled when its
        # event is deleted (messaging/apps.py).
        on_delete=models.SET_NULL,
        related_name="reminders",
        help_text="A reminder: sent remind_before the start of this event, which it follows "
        "when the event moves.",
    )
    remind_before = models.DurationField(null=True, blank=True)
    recurrence = models.ForeignKey(
        "messaging.Recurrence",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="occurrences",
        help_text="The repeating blast this one is an occurrence of.",
    )
    enqueued_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the send task now waiting in the broker was handed to it; empty "
        "once a worker took it up (or when handing it over failed).",
    )
    send_token = models.UUIDField(
        null=True,
        blank=True,
        help_text="The send task that is current: an older copy of the task does nothing.",
    )
    processing_started_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When a worker last took up or made progress on the blast; the sweeper "
        "hands a sending blast whose worker went quiet to another.",
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("send_blast", "Can send a blast"),
            ("approve_blast", "Can approve or reject a blast waiting for approval"),
        ]
        indexes = [models.Index(fields=["status", "scheduled_for"])]

    def __str__(self) -> str:
        return self.name or f"Blast #{self.pk}"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES

    def counts(self) -> dict[str, int]:
        """Rows per delivery status, from one indexed GROUP BY."""
        counts = {status.value: 0 for status in Delivery.Status}
        rows = (
            Delivery.objects.filter(blast_id=self.pk)
            .order_by()
            .values("status")
            .annotate(n=Count("id"))
        )
        for row in rows:
            counts[row["status"]] = row["n"]
        counts["total"] = sum(counts.values())
        return counts


class Recurrence(models.Model):
    """A blast that repeats: weekly on chosen weekdays, or monthly on a day of the month,
    at a time of day in TIME_ZONE, from a first date until an end date.

    Each occurrence is a blast of its own (``Blast.recurrence``), made when it is due
    from this text and audience as they are then; ``next_run_at`` is the next one. A
    dispatch pass makes the occurrence (its idempotency key is derived from this row and
    the occurrence's time, so two passes make it once) and only then moves
    ``next_run_at`` on with a conditional UPDATE.
    """

    class Frequency(models.TextChoices):
        WEEKLY = "weekly", "Weekly"
        MONTHLY = "monthly", "Monthly"

    name = models.CharField(max_length=200)
    body = models.TextField()
    audience_community = models.BooleanField("community members", default=False)
    audience_events = models.ManyToManyField(
        "events.Event", blank=True, related_name="+", verbose_name="event registrations"
    )
    audience_tags = models.ManyToManyField(
        "members.Tag", blank=True, related_name="+", verbose_name="member tags"
    )
    frequency = models.CharField(max_length=8, choices=Frequency.choices)
    weekdays = models.CharField(
        max_length=20,
        blank=True,
        help_text="Weekly: the days, 0 = Monday to 6 = Sunday, comma-separated.",
    )
    day_of_month = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Monthly: the day (1-31; in shorter months, the last day).",
    )
    time_of_day = models.TimeField(help_text="Local time (TIME_ZONE).")
    starts_on = models.DateField()
    ends_on = models.DateField(help_text="The last day an occurrence may fall on.")
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    active = models.BooleanField(default=True)
    quiet_hours_override = models.BooleanField("may send in quiet hours", default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who last changed it: occurrences wait for approval if either its author "
        "or its last editor would have to ask for it.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["next_run_at", "id"]
        verbose_name = "repeating blast"

    def __str__(self) -> str:
        return self.name


class Delivery(models.Model):
    """One recipient of one blast: the unit that is claimed, sent and tracked.

    State machine::

        pending --(claimed by a worker, before any API call)--> sending
        sending --(opted out or suppressed since compose: found when its chunk is
            claimed, or in the UPDATE right before its call)--> skipped
        sending --(Twilio answered 201)--> sent
        sending --(Twilio refused it for this recipient or its text)--> failed
        sending --(429 or connection refused: certainly not created)--> pending, after a backoff
        sending --(the sender or account was refused: the 1st time the blast pauses, the
            2nd time the row waits a minute while the rest of the list goes on)--> pending
        sending --(refused so a 3rd time)--> failed
        sending --(claimed but never sent: the pass ended or the blast stopped)--> pending
        sending --(5xx, timeout, dropped connection, or the claim went stale)--> unknown
        unknown --(the original worker's late answer, its claim still held: it was only
            slow)--> sent | failed | pending, as that answer says
        unknown --(found in Twilio's records for this attempt's time window)--> sent
        unknown --(not in Twilio's records for that window)--> pending
        unknown --(Twilio's records are ambiguous, or it stayed unknown for
            SMS_UNKNOWN_ESCALATE_HOURS)--> unknown with ``attention`` set, until staff
            send it again (--> pending) or mark it sent (--> sent); meanwhile status
            callbacks may still settle it, and so may reconciliation when it was flagged
            for being unknown too long, clearing the flag
        pending --(blast cancelled)--> cancelled
        (every "--> pending" above writes cancelled instead once the blast is cancelled)
        (created as skipped when unsubscribed or suppressed at compose time)
        failed --(staff's "Retry failed": the error may pass now and the number is not
            unsubscribed or suppressed)--> pending
        pending --(its blast was rejected or withdrawn before approval)--> cancelled
        sending | unknown, or pending | cancelled after an attempt --(a status callback
            for a message of the row's that it never learnt of: Twilio has it; not one
            known to have failed before staff retried)--> sent (queued, sending, sent),
            delivered, or failed (undelivered, failed)
        sent | delivered | failed --(a status callback for its own message)--> the same,
            only forward: the first final status stays (messaging/services/callbacks.py)
        sent --(a status callback naming its current attempt, for a message it does not
            hold: it held an earlier attempt's when staff marked it sent)--> that
            message's status

    A row leaves 'pending' only through a conditional UPDATE that checks its status,
    so no two workers ever send the same row; an unknown row is never sent again until
    Twilio's records say it did not go out, or staff decide.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"
        UNKNOWN = "unknown", "Unknown"
        SKIPPED = "skipped", "Skipped"
        CANCELLED = "cancelled", "Cancelled"

    class SkipReason(models.TextChoices):
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        SUPPRESSED = "suppressed", "Suppressed"

    blast = models.ForeignKey(Blast, on_delete=models.CASCADE, related_name="deliveries")
    phone = PhoneNumberField()
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    event = models.ForeignKey(
        "events.Event",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The event this recipient registered for (for event placeholders).",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    skip_reason = models.CharField(max_length=16, choices=SkipReason.choices, blank=True)
    body = models.TextField(blank=True, help_text="The text as sent to this recipient.")
    twilio_sid = models.CharField("Twilio SID", max_length=64, null=True, blank=True)
    twilio_status = models.CharField(max_length=32, blank=True)
    error_code = models.PositiveIntegerField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    sender_refusals = models.PositiveSmallIntegerField(
        default=0,
        help_text="How often Twilio refused this row with an error about the sender or "
        "account: the first pauses the blast, the third fails the row.",
    )

    class Attention(models.TextChoices):
        AMBIGUOUS = "ambiguous", "Twilio's records do not say which message is this one"
        OVERDUE = "overdue", "Outcome unknown for too long"

    attention = models.CharField(
        "needs a decision",
        max_length=16,
        choices=Attention.choices,
        blank=True,
        help_text="Set when the engine will not decide alone whether this row went out: "
        "staff send it again or mark it sent.",
    )
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="Not retried before this (backoff after 429)."
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["blast_id", "id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["blast", "phone"], name="delivery_unique_blast_phone"),
            models.UniqueConstraint(
                fields=["twilio_sid"],
                condition=models.Q(twilio_sid__isnull=False),
                name="delivery_unique_twilio_sid",
            ),
        ]
        indexes = [
            models.Index(fields=["blast", "status", "id"]),
            models.Index(fields=["status", "claimed_at"]),
            models.Index(fields=["phone"]),
            models.Index(
                fields=["attention"], condition=~models.Q(attention=""), name="delivery_attention"
            ),
            # The blast page's error-code filter and its list of codes present.
            models.Index(
                fields=["blast", "error_code"],
                condition=models.Q(error_code__isnull=False),
                name="delivery_blast_error_code",
            ),
            # The dashboard's messages per day. Partial, so rows written at compose
            # time (no time yet, not failed) cost these indexes nothing.
            models.Index(
                fields=["sent_at"],
                condition=models.Q(sent_at__isnull=False),
                name="delivery_sent_at",
            ),
            models.Index(
                fields=["delivered_at"],
                condition=models.Q(delivered_at__isnull=False),
                name="delivery_delivered_at",
            ),
            models.Index(
                fields=["updated_at"],
                condition=models.Q(status="failed"),
                name="delivery_failed_updated_at",
            ),
        ]

    def __str__(self) -> str:
        return f"{phone_display(self.phone)} ({self.get_status_display()})"

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class OutboxMessage(models.Model):
    """What the console backend 'sent': nothing leaves the machine, staff read it here."""

    sid = models.CharField("SID", max_length=64, unique=True)
    to = models.CharField(max_length=32)
    from_number = models.CharField("from", max_length=64, blank=True)
    body = models.TextField()
    status_callback = models.CharField(max_length=500, blank=True)
    error_code = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "outbox message"
        indexes = [models.Index(fields=["to", "created_at"])]

    def __str__(self) -> str:
        return f"to {phone_display(self.to)}: {self.body[:40]}"


class SendRateLimiter(models.Model):
    """The send rate shared by every worker process: the next free send slot, in epoch seconds.

    Workers reserve a few slots at a time with a row lock, so SMS_RATE_PER_SECOND holds
    for the whole deployment however many workers run, on SQLite or PostgreSQL.
    """

    key = models.CharField(max_length=100, unique=True)
    next_slot = models.FloatField(default=0.0)

    def __str__(self) -> str:
        return self.key


class InboundMessage(models.Model):
    """A text someone sent to our number, as Twilio's inbound webhook delivered it.

    Every inbound message is kept once (by its SID: a webhook Twilio retries changes
    nothing). Keywords act on their own: STOP and its variants unsubscribe, START lifts
    it, HELP is answered, JOIN (when SMS_JOIN_KEYWORD is set) makes a member; those rows
    are handled as they arrive. Anything else is a *reply*, waiting in the admin's inbox
    until staff mark it handled. Each row is linked to the member or registration with
    the sender's number and to the last blast that reached it.
    """

    class Kind(models.TextChoices):
        REPLY = "reply", "Reply"
        STOP = "stop", "Stop keyword (unsubscribed)"
        START = "start", "Start keyword (re-subscribed)"
        HELP = "help", "Help keyword (answered)"
        JOIN = "join", "Join keyword (member added)"

    message_sid = models.CharField("message SID", max_length=64, unique=True)
    phone = models.CharField(
        "from",
        max_length=64,
        db_index=True,
        help_text="The sender in E.164 (as Twilio sent it when it is not a phone number).",
    )
    to_number = models.CharField("to", max_length=64, blank=True)
    body = models.TextField(blank=True)
    num_media = models.PositiveSmallIntegerField("media", default=0)
    media_urls = models.JSONField(default=list, blank=True)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.REPLY)
    keyword = models.CharField(
        max_length=32, blank=True, help_text="The keyword as recognised, e.g. STOP."
    )
    outcome = models.CharField(
        max_length=255, blank=True, help_text="What the keyword did, e.g. already unsubscribed."
    )
    member = models.ForeignKey(
        "members.Member",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="inbound_messages",
    )
    registration = models.ForeignKey(
        "events.Registration",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The newest registration with this number, when no member has it.",
    )
    blast = models.ForeignKey(
        Blast,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="inbound_messages",
        help_text="The last blast sent to this number before the message came in.",
    )
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    handled = models.BooleanField(default=False)
    handled_at = models.DateTimeField(null=True, blank=True)
    handled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name = "inbound message"
        indexes = [
            models.Index(fields=["handled", "-received_at"], name="inbound_handled_received")
        ]

    def __str__(self) -> str:
        return f"from {phone_display(self.phone)}: {self.body[:40]}"
