from members.management.import_command import ImportCommand
from members.models import ImportJob


class Command(ImportCommand):
    help = (
        "Import community members from a CSV file: new phones are added, known ones "
        "updated. Exits non-zero, writing nothing, when the file cannot be read."
    )
    pool = ImportJob.Pool.MEMBERS
