from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from smsadmin.health import health_check


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers and monitoring: 200 when the database and the broker answer and
    beat and a worker ran recently, 503 naming in "failing" what does not.

    Beat (the scheduler) is late when its last dispatch pass is older than three beats
    (SCHEDULER_POLL_SECONDS) and a minute; the worker when the heartbeat task beat sends
    it every WORKER_HEARTBEAT_SECONDS last ran longer ago than three of those and a minute.
    One that never ran (a fresh install before Celery first started) is "never", still 200.
    """
    health = health_check()
    return JsonResponse(health.as_json(), status=200 if health.ok else 503)
