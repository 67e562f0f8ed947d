from django.db import models

from members.models import Consent
from smsadmin.phones import PhoneNumberField, phone_display


class Event(models.Model):
    """An event people register for; its registrations are a blast audience of their own."""

    name = models.CharField(max_length=200)
    starts_at = models.DateTimeField("starts")
    location = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-starts_at", "id"]
        indexes = [models.Index(fields=["-starts_at", "id"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.starts_at:%Y-%m-%d})"


class Registration(Consent):
    """One person signed up for one event; consent fields as on Member (see ``Consent``)."""

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="registrations")
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    phone = PhoneNumberField()
    tags = models.ManyToManyField("members.Tag", blank=True, related_name="registrations")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(Consent.Meta):
        abstract = False
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["event", "phone"], name="registration_unique_event_phone"
            )
        ]
        indexes = [
            models.Index(fields=["phone"]),
            models.Index(fields=["-created_at", "-id"]),
        ]

    def __str__(self) -> str:
        return f"{self.full_name or phone_display(self.phone)} at {self.event.name}"

    @property
    def phone_shown(self) -> str:
        return phone_display(self.phone)

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()
