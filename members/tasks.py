from celery import shared_task

from members.import_jobs import import_job_run


@shared_task(name="members.run_import_job")
def run_import_job(job_id: int) -> None:
    """Preview or import a big CSV file; running it twice does the work once."""
    import_job_run(job_id=job_id)
