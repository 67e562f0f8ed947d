from django.contrib import admin

from members.models import Member
from smsadmin.admin_utils import FastChangeList, PhoneSearchMixin


@admin.register(Member)
class MemberAdmin(PhoneSearchMixin, FastChangeList, admin.ModelAdmin):
    list_display = ("last_name", "first_name", "phone", "email", "is_active", "created_at")
    list_display_links = ("last_name", "first_name")
    list_filter = ("is_active",)
    search_fields = ("first_name", "last_name", "=phone", "email")
    readonly_fields = ("created_at", "updated_at")
    fields = (
        ("first_name", "last_name"),
        "phone",
        "email",
        "is_active",
        "notes",
        ("created_at", "updated_at"),
    )
