from django.urls import path

from messaging.views import approval, blast, compose

app_name = "messaging"

urlpatterns = [
    path("compose/", compose.compose, name="compose"),
    path("compose/preflight/", compose.preflight, name="compose_preflight"),
    path("compose/test/", compose.send_test, name="compose_test"),
    path("compose/confirm/", compose.confirm, name="compose_confirm"),
    path("blasts/<int:pk>/", blast.blast_detail, name="blast"),
    path("blasts/<int:pk>/progress/", blast.blast_progress, name="blast_progress"),
    path("blasts/<int:pk>/pause/", blast.blast_pause_view, name="blast_pause"),
    path("blasts/<int:pk>/resume/", blast.blast_resume_view, name="blast_resume"),
    path("blasts/<int:pk>/cancel/", blast.blast_cancel_view, name="blast_cancel"),
    path("blasts/<int:pk>/send-now/", blast.blast_send_now_view, name="blast_send_now"),
    path("blasts/<int:pk>/retry-failed/", blast.blast_retry_failed_view, name="blast_retry_failed"),
    path("blasts/<int:pk>/recipients.csv", blast.blast_export_csv, name="blast_export"),
    path("blasts/<int:pk>/approve/", approval.approve, name="blast_approve"),
    path("blasts/<int:pk>/reject/", approval.reject, name="blast_reject"),
]
