from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from messaging import webhooks
from smsadmin import two_factor, views
from smsadmin.auth import ForcedPasswordChangeView, admin_login

admin.site.site_header = "smsadmin"
admin.site.site_title = "smsadmin"
admin.site.index_title = "Contacts, events and blasts"
# Before admin.site.urls is read: the sign-in view asks for the second factor.
two_factor.protect(admin.site)
admin.site.site_url = None  # There is no public site: "View site" led to a bare Not Found.

urlpatterns = [
    # Before admin.site.urls, so the admin's own password link clears the forced flag too.
    path(
        "admin/password_change/",
        ForcedPasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "admin/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(
            template_name="registration/password_change_done.html",
            extra_context={"title": "Password changed"},
        ),
        name="password_change_done",
    ),
    # Two-factor sign-in (smsadmin.two_factor); before admin.site.urls, whose catch-all
    # would take them.
    path("admin/2fa/", two_factor.overview, name="two_factor"),
    path("admin/2fa/setup/", two_factor.setup, name="two_factor_setup"),
    path("admin/2fa/verify/", two_factor.verify, name="two_factor_verify"),
    path(
        "admin/2fa/recovery-codes/",
        two_factor.new_recovery_codes,
        name="two_factor_recovery_codes",
    ),
    path("admin/2fa/disable/", two_factor.disable, name="two_factor_disable"),
    path("admin/login/", admin_login),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("", include("messaging.urls")),
    path("webhooks/twilio/status/", webhooks.twilio_status, name="twilio_status"),
    path("webhooks/twilio/inbound/", webhooks.twilio_inbound, name="twilio_inbound"),
]
