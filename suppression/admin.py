from django.contrib import admin, messages

from smsadmin.admin_utils import FastChangeList, PhoneSearchMixin
from suppression.models import SuppressedContact, UnsubscribedContact
from suppression.services import suppression_lift


@admin.register(UnsubscribedContact)
class UnsubscribedContactAdmin(PhoneSearchMixin, FastChangeList, admin.ModelAdmin):
    list_display = ("phone", "source", "reason", "evidence", "created_by", "created_at")
    list_filter = ("source",)
    list_select_related = ("created_by",)
    search_fields = ("=phone", "reason", "evidence")
    readonly_fields = ("created_by", "created_at")
    actions = ["export_csv"]

    def save_model(self, request, obj, form, change):  # type: ignore[no-untyped-def]
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(SuppressedContact)
class SuppressedContactAdmin(PhoneSearchMixin, FastChangeList, admin.ModelAdmin):
    list_display = (
        "phone",
        "error_code",
        "reason",
        "failure_count",
        "last_failed_at",
        "lifted",
    )
    list_filter = ("lifted", "error_code")
    list_select_related = ("lifted_by",)
    search_fields = ("=phone", "reason")
    raw_id_fields = ("delivery",)
    readonly_fields = (
        "failure_count",
        "first_failed_at",
        "last_failed_at",
        "delivery",
        "lifted_by",
        "lifted_at",
        "created_at",
        "updated_at",
    )

    actions = ["lift", "export_csv"]

    @admin.action(
        description="Lift selected suppressions (texts may reach them again)",
        permissions=["lift"],
    )
    def lift(self, request, queryset):  # type: ignore[no-untyped-def]
        count = suppression_lift(
            suppressions=queryset, user=request.user, reason="Lifted in the admin"
        )
        already = queryset.count() - count
        text = f"Lifted {count} suppression{'s' if count != 1 else ''}."
        if already:
            text += f" {already} were already lifted."
        self.message_user(request, text, messages.SUCCESS)

    def has_lift_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return request.user.has_perm("suppression.lift_suppression")
