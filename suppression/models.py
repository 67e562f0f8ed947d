from django.conf import settings
from django.db import models

from smsadmin.phones import PhoneNumberField


class UnsubscribedContact(models.Model):
    """A number whose owner asked not to be texted. No blast ever sends to it.

    The row exists while the person is unsubscribed; a START keyword (or an Admin)
    removes it.
    """

    class Source(models.TextChoices):
        KEYWORD = "keyword", "Replied with a stop keyword"
        CARRIER = "carrier", "Carrier reported an opt-out"
        MANUAL = "manual", "Added by staff"
        IMPORT = "import", "Imported"

    phone = PhoneNumberField(unique=True)
    reason = models.CharField(max_length=255, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.MANUAL)
    evidence = models.CharField(
        max_length=255,
        blank=True,
        help_text="What proves it, such as the inbound message SID of the STOP.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "unsubscribed contact"

    def __str__(self) -> str:
        return self.phone


class SuppressedContact(models.Model):
    """A number we stopped texting because messages to it keep failing permanently.

    Active while ``lifted`` is false. Lifting (Admins only) keeps the row as history and
    lets blasts reach the number again; a new permanent failure suppresses it anew.
    """

    phone = PhoneNumberField(unique=True)
    reason = models.CharField(max_length=255, blank=True)
    error_code = models.PositiveIntegerField(null=True, blank=True)
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
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-last_failed_at", "-id"]
        verbose_name = "suppressed contact"
        permissions = [("lift_suppression", "Can lift a suppression")]
        indexes = [models.Index(fields=["lifted", "phone"])]

    def __str__(self) -> str:
        return self.phone
