from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from messaging import webhooks
from smsadmin import views
from smsadmin.auth import ForcedPasswordChangeView

admin.site.site_header = "smsadmin"
admin.site.site_title = "smsadmin"
admin.site.index_title = "Contacts, events and blasts"
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
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("", include("messaging.urls")),
    path("webhooks/twilio/status/", webhooks.twilio_status, name="twilio_status"),
    path("webhooks/twilio/inbound/", webhooks.twilio_inbound, name="twilio_inbound"),
]
