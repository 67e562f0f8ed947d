from django.contrib.auth.models import AbstractUser
from django.db import models

from smsadmin.phones import PhoneNumberField


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
