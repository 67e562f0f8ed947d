from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import path

from members.consent_admin import ConsentAdminMixin
from members.import_admin import ImportJobAdmin, can_import, upload_view
from members.models import ImportJob, Member
from smsadmin.admin_utils import FastChangeList, PhoneSearchMixin

__all__ = ["ImportJobAdmin", "MemberAdmin"]


@admin.register(Member)
class MemberAdmin(ConsentAdminMixin, PhoneSearchMixin, FastChangeList, admin.ModelAdmin):
    list_display = (
        "last_name",
        "first_name",
        "phone",
        "email",
        "is_active",
        "consent_summary",
        "created_at",
    )
    list_display_links = ("last_name", "first_name")
    list_filter = ("is_active", "consent_source")
    search_fields = ("first_name", "last_name", "=phone", "email")
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    ("first_name", "last_name"),
                    "phone",
                    "email",
                    "is_active",
                    "notes",
                    ("created_at", "updated_at"),
                )
            },
        ),
        ConsentAdminMixin.consent_fieldset,
    )
    actions = ["export_csv"]

    def get_urls(self):  # type: ignore[no-untyped-def]
        return [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="members_member_import",
            ),
            *super().get_urls(),
        ]

    def import_view(self, request: HttpRequest) -> HttpResponse:
        return upload_view(request, model_admin=self, pool=ImportJob.Pool.MEMBERS, event=None)

    import_view.csrf_exempt = True  # type: ignore[attr-defined]  # upload_view checks it

    def changelist_view(self, request, extra_context=None):  # type: ignore[no-untyped-def]
        extra_context = {
            "can_import": can_import(request.user, ImportJob.Pool.MEMBERS),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context)
