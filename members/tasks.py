from celery import shared_task

from members.import_jobs import import_job_run


@shared_task(name="members.run_import_job")
def run_import_job(job_id: int) -> None:
    """Preview or import a big CSV file; running it twice does the work once."""
    import_job_run(job_id=job_id)


@shared_task(name="members.clean_import_files", ignore_result=True)
def clean_import_files_task() -> dict[str, int]:
    """Daily: abandon previews never confirmed, remove uploads and old problem reports."""
    from members.cleanup import import_files_clean

    return import_files_clean()
