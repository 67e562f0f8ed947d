from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.http import HttpRequest

from smsadmin.csv_export import export_csv
from smsadmin.models import User

# Offered only where a ModelAdmin names it (actions = ["export_csv"]): exporting users
# or the outbox is not something every list should do.
admin.site.add_action(export_csv, "export_csv")
admin.site.disable_action("export_csv")


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = (
        "username",
        "email",
        "first_name",
        "last_name",
        "roles",
        "is_active",
        "must_change_password",
        "last_login",
    )
    list_filter = ("is_active", "is_superuser", "groups", "must_change_password")
    search_fields = ("username", "first_name", "last_name", "email")
    readonly_fields = ("last_login", "date_joined")
    fieldsets = (
        *DjangoUserAdmin.fieldsets,
        ("Sign-in", {"fields": ("must_change_password", "mobile_phone")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("username", "usable_password", "password1", "password2"),
            },
        ),
        ("Role", {"fields": ("first_name", "last_name", "email", "groups")}),
    )

    def get_queryset(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description="roles")
    def roles(self, obj: User) -> str:
        return ", ".join(group.name for group in obj.groups.all()) or "-"

    def save_model(self, request, obj, form, change):  # type: ignore[no-untyped-def]
        if not change:
            # Whoever set the first password knows it; the new user must pick their own.
            obj.must_change_password = True
            obj.is_staff = True
        super().save_model(request, obj, form, change)

    def user_change_password(self, request, id, form_url=""):  # type: ignore[no-untyped-def]
        response = super().user_change_password(request, id, form_url)
        if request.method == "POST" and response.status_code == 302:
            user = self.get_object(request, id)
            if user is not None and user.pk != request.user.pk:
                User.objects.filter(pk=user.pk).update(must_change_password=True)
                messages.info(request, f"{user} must choose a new password at next sign-in.")
        return response
