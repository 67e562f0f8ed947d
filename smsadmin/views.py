from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from messaging.services.repeating import scheduler_state


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers and monitoring: 200 when the database answers and the scheduler
    is on time, 503 when the database does not answer or the scheduler is late.

    The scheduler is late when its last dispatch pass is older than three beats
    (SCHEDULER_POLL_SECONDS) and a minute. One that never ran (a fresh install before
    Celery beat first started) is reported as "never", still with 200.
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        scheduler = scheduler_state()
    except Exception as exc:  # any database failure means "not healthy"
        return JsonResponse({"status": "error", "database": type(exc).__name__}, status=503)
    late = scheduler.status == "late"
    return JsonResponse(
        {
            "status": "error" if late else "ok",
            "database": "ok",
            "scheduler": {
                "last_run": scheduler.last_run.isoformat() if scheduler.last_run else None,
                "status": scheduler.status,
            },
        },
        status=503 if late else 200,
    )
