from django.contrib.auth.models import AbstractUser
from django.db import models

from smsadmin.phones import PhoneNumberField


class Heartbeat(models.Model):
    """When a periodic job last ran ("scheduler": the dispatch pass beat runs), for
    /healthz and the admin's front page."""

    name = models.CharField(max_length=50, unique=True)
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.at:%Y-%m-%d %H:%M:%S}"


class User(AbstractUser):
    """A member of staff who signs in: an Admin or a Social manager (see smsadmin.roles)."""

    must_change_password = models.BooleanField(
        default=False,
        help_text="Sent to the password-change page on every request until they change it.",
    )
    mobile_phone = PhoneNumberField(
        blank=True, help_text="Their own mobile, for test sends of a blast."
    )

    class Meta:
        ordering = ["username"]
