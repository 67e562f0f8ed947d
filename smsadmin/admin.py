from functools import wraps

from axes.admin import AccessFailureLogAdmin, AccessLogAdmin
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.apps import apps
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import IntegerField, OuterRef, QuerySet, Subquery, Sum
from django.http import HttpRequest
from django.utils import timezone
from django.utils.formats import date_format

from smsadmin.auth import account_cooloff, address_cooloff, signin_unlock
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

    actions = ["unlock_sign_in"]

    def get_queryset(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        return super().get_queryset(request).prefetch_related("groups")

    def has_unlock_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("smsadmin.change_user") and request.user.has_perm(
            "axes.delete_accessattempt"
        )

    @admin.action(description="Unlock sign-in", permissions=["unlock"])
    def unlock_sign_in(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        _unlock(self, request, list(queryset.values_list("username", flat=True)))

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


# --- Sign-in lockouts ---------------------------------------------------------------------
# django-axes' records, in plain words, under "Users and sign-in" (AXES_ENABLE_ADMIN is
# off, so axes registers nothing itself). Renamed only where the admin shows them: their
# models' verbose names belong to axes' migrations.
PLAIN_NAMES = {
    AccessAttempt: "Sign-in lockouts",
    AccessLog: "Sign-ins",
    AccessFailureLog: "Failed sign-ins",
}


def _unlock(model_admin: admin.ModelAdmin, request: HttpRequest, usernames: list[str]) -> None:
    names = sorted({name for name in usernames if name})
    counted = signin_unlock(usernames=names)
    if counted:
        model_admin.message_user(
            request,
            f"Sign-in unlocked for {', '.join(names)}: their failed sign-ins are forgotten, "
            "from every address.",
            messages.SUCCESS,
        )
    else:
        model_admin.message_user(
            request, f"No failed sign-ins to forget for {', '.join(names)}.", messages.INFO
        )


@admin.register(AccessAttempt)
class SigninLockoutAdmin(admin.ModelAdmin):
    """Failed sign-ins counted now, one row per user name, address and browser, and
    whether they keep that user name out; "Unlock" forgets them (both lockouts)."""

    list_display = ("username", "ip_address", "failures_since_start", "attempt_time", "state")
    list_display_links = None
    search_fields = ("username", "ip_address")
    ordering = ("-attempt_time",)
    actions = ["unlock"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AccessAttempt]:
        now = timezone.now()
        account = (
            AccessAttempt.objects.filter(
                username=OuterRef("username"), attempt_time__gte=now - account_cooloff()
            )
            .order_by()
            .values("username")
            .annotate(total=Sum("failures_since_start"))
            .values("total")[:1]
        )
        pair = (
            AccessAttempt.objects.filter(
                username=OuterRef("username"),
                ip_address=OuterRef("ip_address"),
                attempt_time__gte=now - address_cooloff(),
            )
            .order_by()
            .values("username")
            .annotate(total=Sum("failures_since_start"))
            .values("total")[:1]
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                account_failures=Subquery(account, output_field=IntegerField()),
                pair_failures=Subquery(pair, output_field=IntegerField()),
            )
        )

    @admin.display(description="state")
    def state(self, obj: AccessAttempt) -> str:
        if (getattr(obj, "account_failures", 0) or 0) >= settings.AXES_ACCOUNT_FAILURE_LIMIT:
            return "Account locked, from every address"
        if (getattr(obj, "pair_failures", 0) or 0) >= settings.AXES_ADDRESS_FAILURE_LIMIT:
            until = timezone.localtime(obj.attempt_time + address_cooloff())
            return f"Locked from this address until {date_format(until, 'TIME_FORMAT')}"
        return "Not locked"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_unlock_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("axes.delete_accessattempt")

    @admin.action(description="Unlock", permissions=["unlock"])
    def unlock(self, request: HttpRequest, queryset: QuerySet[AccessAttempt]) -> None:
        _unlock(self, request, list(queryset.values_list("username", flat=True)))

    def changelist_view(self, request, extra_context=None):  # type: ignore[no-untyped-def]
        extra = {"title": PLAIN_NAMES[AccessAttempt], **(extra_context or {})}
        return super().changelist_view(request, extra_context=extra)


admin.site.register(AccessLog, AccessLogAdmin)
admin.site.register(AccessFailureLog, AccessFailureLogAdmin)

# The breadcrumbs above these pages name their app: not "Axes".
apps.get_app_config("axes").verbose_name = "Users and sign-in"


def _with_plain_names(build):  # type: ignore[no-untyped-def]
    """Wrap AdminSite._build_app_dict, which every models list (index, sidebar, an app's
    page) is made from, so axes' models are listed by their plain names."""

    @wraps(build)
    def build_app_dict(request, label=None):  # type: ignore[no-untyped-def]
        found = build(request, label)
        for app in [found] if label else (found or {}).values():
            for model in (app or {}).get("models", []):
                model["name"] = PLAIN_NAMES.get(model["model"], model["name"])
        return found

    return build_app_dict


admin.site._build_app_dict = _with_plain_names(admin.site._build_app_dict)  # type: ignore[method-assign]
