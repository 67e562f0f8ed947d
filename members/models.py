from django.db import models

from smsadmin.phones import PhoneNumberField


class Member(models.Model):
    """A community member: the 'community' audience of a blast is every active member."""

    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    phone = PhoneNumberField(unique=True)
    email = models.EmailField(blank=True)
    is_active = models.BooleanField(
        "active", default=True, help_text="Inactive members get no blasts."
    )
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["last_name", "first_name", "id"]
        indexes = [
            models.Index(fields=["last_name", "first_name", "id"]),
            models.Index(fields=["is_active", "id"]),
        ]

    def __str__(self) -> str:
        return self.full_name or self.phone

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()
