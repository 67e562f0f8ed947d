"""The database's clock: one clock for every host that stamps or compares claim times."""

from __future__ import annotations

from django.db.models import DateTimeField, Func


class DbNow(Func):
    """The database's current time, written exactly as Django writes a datetime.

    Django's own Now() on SQLite keeps milliseconds only ('...44.510'), while values
    Django writes keep microseconds ('...44.510000'): SQLite compares the text, so an
    equality check on a stamped value would never match. Here SQLite's time gets the
    same six digits.
    """

    template = "STATEMENT_TIMESTAMP()"
    output_field = DateTimeField()

    def as_sqlite(self, compiler, connection, **extra_context):  # type: ignore[no-untyped-def]
        return self.as_sql(
            compiler,
            connection,
            template="STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f000', 'NOW')",
            **extra_context,
        )
