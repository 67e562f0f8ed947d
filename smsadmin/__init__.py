# Load the Celery app with Django, so @shared_task binds to it and tasks enqueued from
# web requests use the configured broker.
from .celery import app as celery_app

__all__ = ("celery_app",)
