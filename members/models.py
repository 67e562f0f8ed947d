import shutil
from pathlib import Path

from django.conf import settings
from django.db import models, transaction
from django.db.models.functions import Lower
from django.db.models.signals import post_delete
from django.dispatch import receiver

from smsadmin.phones import PhoneNumberField, phone_display


class ConsentSource(models.TextChoices):
    IMPORT = "import", "Imported from a file"
    KEYWORD = "keyword", "Texted a keyword (JOIN)"
    STAFF = "staff", "Entered by staff"
    FORM = "form", "Sign-up form"


class Consent(models.Model):
    """How and when a contact agreed to be texted. Shared by Member and Registration.

    Set it when creating the contact, e.g. for the JOIN keyword::

        Member.objects.create(
            phone=phone,
            consent_source=ConsentSource.KEYWORD,
            consent_at=received_at,
            consent_evidence=f"JOIN {message_sid}",
        )

    ``consent_source``: ``import`` (evidence: the file name and who imported it;
    ``consent_by`` that user), ``keyword`` (the keyword and the inbound message SID),
    ``staff`` (``consent_by``: who entered it; evidence what they were told), ``form``
    (which form). Empty for contacts that predate consent records. The admin, the
    importer and the JOIN keyword fill it; an update never overwrites an existing one.
    """

    consent_source = models.CharField(
        "consent", max_length=16, choices=ConsentSource.choices, blank=True
    )
    consent_at = models.DateTimeField("consent given", null=True, blank=True)
    consent_evidence = models.CharField(
        max_length=255,
        blank=True,
        help_text="What shows it: file and importer, keyword and message SID, form, ...",
    )
    consent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name="consent recorded by",
        help_text="The staff member who entered or imported the contact.",
    )

    class Meta:
        abstract = True

    def consent_text(self) -> str:
        """``"Imported from a file, 2026-01-02: members.csv imported by ana"``, or ""."""
        if not self.consent_source:
            return ""
        parts = [self.get_consent_source_display()]  # type: ignore[attr-defined]
        if self.consent_at:
            parts.append(f"{self.consent_at:%Y-%m-%d}")
        text = ", ".join(parts)
        return f"{text}: {self.consent_evidence}" if self.consent_evidence else text


class Tag(models.Model):
    """A label staff put on contacts ("volunteers", "north side").

    Compose can narrow the community to members having any of the chosen tags;
    registrations carry tags too, for staff's own sorting. Names are unique whatever
    their case, so "Volunteers" and "volunteers" are one tag.
    """

    name = models.CharField(max_length=50, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(Lower("name"), name="tag_unique_name_any_case"),
        ]

    def __str__(self) -> str:
        return self.name


class Member(Consent):
    """A community member: the 'community' audience of a blast is every active member."""

    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    phone = PhoneNumberField(unique=True)
    email = models.EmailField(blank=True)
    is_active = models.BooleanField(
        "active", default=True, help_text="Inactive members get no blasts."
    )
    notes = models.TextField(blank=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="members")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(Consent.Meta):
        abstract = False
        ordering = ["last_name", "first_name", "id"]
        indexes = [
            models.Index(fields=["last_name", "first_name", "id"]),
            models.Index(fields=["is_active", "id"]),
        ]

    def __str__(self) -> str:
        return self.full_name or phone_display(self.phone)

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class ImportJob(models.Model):
    """One uploaded CSV file of contacts, kept from preview to import, for either pool.

    State machine::

        pending --(claimed by the request or a worker)--> previewing
        previewing --(file read, nothing written)--> previewed
        previewed --(staff confirm)--> confirmed
        confirmed --(claimed by the request or a worker)--> applying
        applying --(every batch written)--> applied
        applying --(the contacts changed since the preview; nothing written)--> previewed
        previewing | applying --(error, or the worker stopped)--> failed

    Every move out of pending, previewed and confirmed is a conditional UPDATE on the
    status, so a task delivered twice or a double-clicked confirm does the work once.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to be read"
        PREVIEWING = "previewing", "Reading"
        PREVIEWED = "previewed", "Ready to confirm"
        CONFIRMED = "confirmed", "Waiting to be imported"
        APPLYING = "applying", "Importing"
        APPLIED = "applied", "Imported"
        FAILED = "failed", "Failed"

    RUNNING_STATUSES = (Status.PENDING, Status.PREVIEWING, Status.CONFIRMED, Status.APPLYING)

    class Pool(models.TextChoices):
        MEMBERS = "members", "Community members"
        REGISTRATIONS = "registrations", "Event registrations"

    pool = models.CharField(max_length=16, choices=Pool.choices)
    event = models.ForeignKey(
        "events.Event",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="import_jobs",
        help_text="The event whose registrations are imported (registrations only).",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    status_message = models.TextField(
        blank=True, help_text="Why it failed, or what changed between preview and import."
    )
    file_name = models.CharField("file", max_length=255, help_text="As uploaded.")
    stored_as = models.CharField(max_length=255, help_text="Folder under IMPORT_DIR.")
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField("SHA-256", max_length=64)
    line_count = models.PositiveIntegerField(default=0)
    columns = models.JSONField(
        default=dict, blank=True, help_text="Which column feeds which field; those left out."
    )
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    rows = models.PositiveIntegerField(default=0, help_text="Data rows, blank lines excluded.")
    new_count = models.PositiveIntegerField("new", default=0)
    updated_count = models.PositiveIntegerField("updated", default=0)
    unchanged_count = models.PositiveIntegerField("unchanged", default=0)
    invalid_count = models.PositiveIntegerField("invalid", default=0)
    duplicate_count = models.PositiveIntegerField("duplicate", default=0)
    blank_count = models.PositiveIntegerField("blank lines", default=0)
    unsubscribed_count = models.PositiveIntegerField("unsubscribed", default=0)
    suppressed_count = models.PositiveIntegerField("suppressed", default=0)
    plan_digest = models.CharField(
        max_length=64,
        blank=True,
        help_text="Hash of what the preview would do to each contact; the import must match.",
    )
    problems = models.JSONField(
        default=list, blank=True, help_text="The first rows in error: [line, kind, reason]."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(
        auto_now=True, help_text="Also touched by every progress step, so a stalled job shows."
    )
    previewed_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "CSV import"
        indexes = [models.Index(fields=["status", "updated_at"])]

    def __str__(self) -> str:
        return f"{self.file_name} ({self.get_status_display()})"

    @property
    def is_running(self) -> bool:
        return self.status in self.RUNNING_STATUSES

    @property
    def problem_count(self) -> int:
        return self.invalid_count + self.duplicate_count

    def counts(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "new": self.new_count,
            "updated": self.updated_count,
            "unchanged": self.unchanged_count,
            "invalid": self.invalid_count,
            "duplicate": self.duplicate_count,
            "blank": self.blank_count,
            "unsubscribed": self.unsubscribed_count,
            "suppressed": self.suppressed_count,
        }


@receiver(post_delete, sender=ImportJob)
def _remove_import_files(sender: type[ImportJob], instance: ImportJob, **kwargs: object) -> None:
    # The upload and its problem report go with the job; only after the delete commits,
    # so a rolled-back delete keeps them.
    if not instance.stored_as or "/" in instance.stored_as or ".." in instance.stored_as:
        return
    folder = Path(settings.IMPORT_DIR) / instance.stored_as
    transaction.on_commit(lambda: shutil.rmtree(folder, ignore_errors=True))
