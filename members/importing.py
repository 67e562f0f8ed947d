"""CSV import of contacts into either pool: community members or one event's registrations.

One importer serves both pools and every entry point (admin, worker, command line):

- ``inspect_file`` reads the whole file once without touching the database and refuses
  what cannot be imported at all (empty, binary, unknown encoding, no phone column,
  broken quoting), so bad input is refused before anything is written.
- ``import_preview`` classifies every row against the database (new, updated,
  unchanged, invalid, duplicate) and writes nothing.
- ``import_apply`` does the same pass and writes, batch by batch.

members.import_jobs keeps an upload between preview and confirm for the admin.

Rows are streamed: memory holds one batch of contacts and the set of phones seen so far
(to collapse duplicates), never the file.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from events.models import Registration
from members.models import ConsentSource, ImportJob, Member, Tag
from members.services import (
    TAG_MAX_LENGTH,
    tag_key,
    tag_links,
    tag_links_insert,
    tags_find,
    tags_get_or_create,
)
from smsadmin.csv_export import csv_writer, unescape_cell
from smsadmin.phones import InvalidPhoneNumber, normalize_phone
from suppression.services import blocked_phones

BATCH_SIZE = 1000
SHOWN_PROBLEMS = 50
_CHUNK = 1 << 16
# A quoted cell may hold a line break (an address); one that runs on for this many lines
# is a quote that was never closed, which would swallow the rest of the file silently.
_MAX_LINES_PER_ROW = 20
# A header names what a contact needs (phone, names, email, tags) and a few more columns
# at most; a longer one is not a header of contacts, and would fill the job's record and
# page. The header line is read only up to _HEADER_LINE_MAX characters.
MAX_COLUMNS = 200
MAX_HEADER_CELL = 1000
_HEADER_LINE_MAX = MAX_COLUMNS * (MAX_HEADER_CELL + 3)
# What a message or the job's record shows of the header: this many cells, each cut to
# _SHOWN_CELL characters.
_SHOWN_HEADER_CELLS = 20
_SHOWN_IGNORED = 50
_SHOWN_CELL = 60
# A problem's reason quotes the cell it is about, cut to this length.
_REASON_CELL = 40
_REASON_MAX = 300

# Header spellings, compared after _header_key(): any case, '_' '-' '.' read as spaces.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "first_name": ("first name", "first", "given name", "firstname", "forename"),
    "last_name": ("last name", "surname", "last", "lastname", "family name"),
    "phone": (
        "phone",
        "mobile",
        "cell",
        "phone number",
        "tel",
        "telephone",
        "mobile number",
        "mobile phone",
        "cell phone",
        "cell number",
        "phone no",
    ),
    "email": ("email", "e-mail", "email address", "e-mail address"),
    "name": ("name", "full name", "fullname"),
    "tags": ("tags", "tag", "groups", "labels"),
}
# One tags cell holds several tags: "volunteers; north side" or "volunteers, north side".
_TAG_SEPARATORS = re.compile(r"[;,]")


class ImportFileError(Exception):
    """The file as a whole cannot be imported; the message tells a person why."""


@dataclass(frozen=True)
class CsvFormat:
    """What ``inspect_file`` found: how to read the file and which column holds what."""

    encoding: str
    delimiter: str
    header: list[str]
    header_line: int
    columns: dict[str, int]
    ignored: list[str]
    line_count: int
    sha256: str
    size: int


@dataclass(frozen=True)
class Problem:
    line: int
    kind: str  # "invalid" or "duplicate"
    reason: str


@dataclass
class ImportSummary:
    """What a pass over the file found (preview) or did (apply)."""

    rows: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    invalid: int = 0
    duplicate: int = 0
    blank: int = 0
    unsubscribed: int = 0
    suppressed: int = 0
    problems: list[Problem] = field(default_factory=list)
    plan_digest: str = ""
    # Tags the file names that do not exist yet (created by the import).
    new_tags: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "invalid": self.invalid,
            "duplicate": self.duplicate,
            "blank": self.blank,
            "unsubscribed": self.unsubscribed,
            "suppressed": self.suppressed,
        }


class _Contact(NamedTuple):
    phone: str
    values: dict[str, str]  # only the fields the row gives; blank cells never erase
    tags: tuple[str, ...] = ()  # added to the contact's tags, never replacing them


@dataclass(frozen=True)
class ImportConsent:
    """Who imported the file: recorded as the consent of the contacts it brings in.

    New contacts get consent source ``import`` with ``evidence`` (the file name and who
    imported it) and ``by``; contacts already there keep their consent, or get this one
    if they had none.
    """

    evidence: str
    by: Any = None  # the importing User, or None from the command line

    def fields(self, at: Any) -> dict[str, Any]:
        return {
            "consent_source": ConsentSource.IMPORT,
            "consent_at": at,
            "consent_evidence": self.evidence[:255],
            "consent_by": self.by,
        }


@dataclass(frozen=True)
class _PoolSpec:
    model: type[models.Model]
    scope: dict[str, Any]
    fields: tuple[str, ...]
    touch_updated_at: bool


def validate_pool(*, pool: str, event_id: int | None) -> None:
    """Raise ValueError unless ``pool`` names a pool and an event is given where needed."""
    _pool_spec(pool=pool, event_id=event_id)


def _pool_spec(*, pool: str, event_id: int | None) -> _PoolSpec:
    if pool == ImportJob.Pool.MEMBERS:
        return _PoolSpec(Member, {}, ("first_name", "last_name", "email"), True)
    if pool == ImportJob.Pool.REGISTRATIONS:
        if event_id is None:
            raise ValueError("Importing registrations needs an event.")
        return _PoolSpec(Registration, {"event_id": event_id}, ("first_name", "last_name"), False)
    raise ValueError(f"Unknown pool {pool!r}.")


# --- Reading the file -----------------------------------------------------------------


def inspect_file(*, path: Path) -> CsvFormat:
    """Check that ``path`` is a CSV file of contacts and say how to read it.

    Reads the whole file (encoding and quoting errors can sit on the last line) but
    keeps only a chunk in memory. Raises ImportFileError for anything that cannot be
    imported, with a message for the person who chose the file.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImportFileError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    if size == 0:
        raise ImportFileError("The file is empty.")
    if size > settings.IMPORT_MAX_BYTES:
        raise ImportFileError(too_big_message(size))
    sha256, line_count, encoding = _scan(path)
    header, header_line, delimiter = _read_header(path, encoding)
    columns, ignored = _match_columns(header)
    if "phone" not in columns:
        named = [cell for cell in header if cell.strip()]
        found = ", ".join(f"'{shorten(cell)}'" for cell in named[:_SHOWN_HEADER_CELLS])
        if len(named) > _SHOWN_HEADER_CELLS:
            found += f" and {len(named) - _SHOWN_HEADER_CELLS} more"
        raise ImportFileError(
            "No phone column. The first line must name the columns, one of them phone, "
            f"mobile, cell, phone number or tel. The first line has: {found or 'nothing'}."
        )
    fmt = CsvFormat(
        encoding=encoding,
        delimiter=delimiter,
        header=header,
        header_line=header_line,
        columns=columns,
        ignored=ignored,
        line_count=line_count,
        sha256=sha256,
        size=size,
    )
    # Read to the end even after the first contact: a broken quote further down must
    # be found now, before anything is written.
    has_contacts = False
    for _line, cells in _records(path, fmt):
        has_contacts = has_contacts or _has_content(cells)
    if not has_contacts:
        raise ImportFileError("The file has a header line but no contacts below it.")
    return fmt


def describe_columns(*, fmt: CsvFormat, pool: str) -> dict[str, Any]:
    """Which header cell feeds which field, and which columns are left out.

    Kept on the import's record and shown on its page, so bounded: header cells are cut
    to a readable length and at most _SHOWN_IGNORED ignored columns are named
    (``ignored_more`` counts the rest).
    """
    wanted = ("phone", "name", *_pool_spec(pool=pool, event_id=0).fields, "tags")
    used = {
        name: shorten(fmt.header[index]) for name, index in fmt.columns.items() if name in wanted
    }
    unused = [fmt.header[index] for name, index in fmt.columns.items() if name not in wanted]
    ignored = [*unused, *fmt.ignored]
    described: dict[str, Any] = {
        "used": used,
        "ignored": [shorten(cell) for cell in ignored[:_SHOWN_IGNORED]],
    }
    if len(ignored) > _SHOWN_IGNORED:
        described["ignored_more"] = len(ignored) - _SHOWN_IGNORED
    return described


def shorten(text: str, limit: int = _SHOWN_CELL) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _scan(path: Path) -> tuple[str, int, str]:
    """SHA-256, line count and encoding, in one pass over the bytes."""
    digest = hashlib.sha256()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    cp1252 = codecs.getincrementaldecoder("cp1252")()
    utf8_ok = cp1252_ok = True
    newlines = returns = 0
    last = b""
    with path.open("rb") as raw:
        first = raw.read(_CHUNK)
        _refuse_binary_signature(first)
        # Excel's "Unicode Text" is UTF-16 with a BOM; its NUL bytes are not binary.
        utf16 = first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        utf16_decoder = codecs.getincrementaldecoder("utf-16")()
        chunk = first
        while chunk:
            digest.update(chunk)
            newlines += chunk.count(b"\n")
            returns += chunk.count(b"\r")
            last = chunk
            if utf16:
                try:
                    utf16_decoder.decode(chunk)
                except UnicodeDecodeError:
                    raise ImportFileError(_not_text_message("valid UTF-16")) from None
            else:
                if b"\x00" in chunk:
                    raise ImportFileError(
                        "This is not a text file (it holds binary data). Upload a CSV file."
                    )
                if utf8_ok:
                    try:
                        utf8.decode(chunk)
                    except UnicodeDecodeError:
                        utf8_ok = False
                if cp1252_ok:
                    try:
                        cp1252.decode(chunk)
                    except UnicodeDecodeError:
                        cp1252_ok = False
            chunk = raw.read(_CHUNK)
    if utf16:
        if not _decodes_to_the_end(utf16_decoder):
            raise ImportFileError(_not_text_message("valid UTF-16"))
        encoding = "utf-16"
    elif utf8_ok and _decodes_to_the_end(utf8):
        encoding = "utf-8-sig" if first.startswith(codecs.BOM_UTF8) else "utf-8"
    elif cp1252_ok:
        # Not UTF-8, so most likely Excel's "CSV (Comma delimited)" on Windows.
        encoding = "cp1252"
    else:
        raise ImportFileError(_not_text_message("UTF-8 or Windows-1252"))
    # CR-only files (old Mac exports) have no \n at all.
    lines = max(newlines, returns)
    if last and not last.endswith((b"\n", b"\r")):
        lines += 1
    return digest.hexdigest(), lines, encoding


def _decodes_to_the_end(decoder: codecs.IncrementalDecoder) -> bool:
    """False when the file stops in the middle of a character."""
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _not_text_message(encoding: str) -> str:
    return f"The file is not {encoding} text. Save it as 'CSV UTF-8' and upload it again."


def _refuse_binary_signature(head: bytes) -> None:
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\xd0\xcf\x11\xe0"):
        raise ImportFileError(
            "This is an Excel workbook, not a CSV file. In Excel choose File > Save As > "
            "'CSV UTF-8 (Comma delimited)' and upload that file."
        )
    if head.startswith(b"%PDF"):
        raise ImportFileError("This is a PDF, not a CSV file.")


def _read_header(path: Path, encoding: str) -> tuple[list[str], int, str]:
    """The first non-blank line as cells, its line number, and the delimiter.

    The delimiter is the one of , ; and tab the header line uses most: a header names
    columns, so it almost never holds a delimiter of its own, while data cells (names
    with commas, addresses) do; csv.Sniffer looks at data too and guesses wrong on them.
    """
    with path.open(encoding=encoding, newline="") as text:
        number = 0
        # Read with a limit: a "header" of a million columns is refused without being
        # held whole.
        while line := text.readline(_HEADER_LINE_MAX + 1):
            number += 1
            if len(line) > _HEADER_LINE_MAX:
                raise ImportFileError(
                    f"Line {number}, the header, is longer than {_HEADER_LINE_MAX:,} "
                    f"characters. The first line must name the columns: at most "
                    f"{MAX_COLUMNS} of them, each name at most {MAX_HEADER_CELL:,} "
                    "characters."
                )
            if not line.strip():
                continue
            counts = {d: line.count(d) for d in (",", ";", "\t")}
            delimiter = max(counts, key=lambda d: (counts[d], d == ","))
            try:
                cells = next(csv.reader([line], delimiter=delimiter))
            except csv.Error as exc:
                if "field larger than field limit" in str(exc):
                    raise ImportFileError(
                        f"Line {number}, the header: a column name is longer than "
                        f"{csv.field_size_limit():,} characters; a column name may be at "
                        f"most {MAX_HEADER_CELL:,}. The first line must name the columns."
                    ) from None
                raise ImportFileError(_csv_error_message(number, exc)) from None
            return _checked_header(cells, number), number, delimiter
    raise ImportFileError("The file holds only blank lines.")


def _checked_header(cells: list[str], number: int) -> list[str]:
    """The header's cells, cleaned; refused when too many or too long to be a header."""
    header = [_clean_cell(cell) for cell in cells]
    # Empty cells at the end (a spreadsheet's unused columns) name nothing.
    while header and not header[-1]:
        header.pop()
    if len(header) > MAX_COLUMNS:
        raise ImportFileError(
            f"Line {number}, the header, has {len(header):,} columns; an import takes at "
            f"most {MAX_COLUMNS}. Only phone, names, email and tags are read: remove the "
            "other columns and upload the file again."
        )
    for index, cell in enumerate(header, start=1):
        if len(cell) > MAX_HEADER_CELL:
            raise ImportFileError(
                f"Line {number}, the header: column {index} is named by {len(cell):,} "
                f"characters ('{shorten(cell, 20)}'); a column name may be at most "
                f"{MAX_HEADER_CELL:,}. The first line must name the columns."
            )
    return header


def _csv_error_message(line: int, exc: csv.Error) -> str:
    if "field larger than field limit" in str(exc):
        return (
            f"Line {line}: a cell is longer than {csv.field_size_limit():,} characters, "
            'the most a cell may hold. Is a quote (") opened there and never closed?'
        )
    return f"Line {line}: the CSV is malformed ({exc})."


def _header_key(cell: str) -> str:
    key = cell.strip().lstrip("\ufeff").lower()
    for ch in "_-.":
        key = key.replace(ch, " ")
    return " ".join(key.rstrip(":*").split())


_ALIAS_TO_FIELD = {
    _header_key(alias): name for name, aliases in COLUMN_ALIASES.items() for alias in aliases
}


def _match_columns(header: list[str]) -> tuple[dict[str, int], list[str]]:
    columns: dict[str, int] = {}
    ignored: list[str] = []
    for index, cell in enumerate(header):
        name = _ALIAS_TO_FIELD.get(_header_key(cell))
        # The first column of a kind wins: two phone columns (home, mobile) cannot both
        # be the contact's number.
        if name and name not in columns:
            columns[name] = index
        elif cell.strip():
            ignored.append(cell.strip())
    return columns, ignored


def _records(path: Path, fmt: CsvFormat) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) for every record after the header, blank ones included."""
    with path.open(encoding=fmt.encoding, newline="") as text:
        reader = csv.reader(text, delimiter=fmt.delimiter)
        previous_end = 0
        try:
            for cells in reader:
                line = previous_end + 1
                previous_end = reader.line_num
                if line <= fmt.header_line:
                    continue
                if previous_end - line >= _MAX_LINES_PER_ROW:
                    raise ImportFileError(
                        f'Line {line}: a quote (") opened on this line is never closed, so '
                        "the lines after it would read as one cell. Fix the quote and "
                        "upload the file again."
                    )
                yield line, cells
        except csv.Error as exc:
            # A cell over the limit is named by the line its record starts on.
            line = previous_end + 1 if "field larger" in str(exc) else reader.line_num
            raise ImportFileError(_csv_error_message(line, exc)) from None


def _has_content(cells: list[str]) -> bool:
    return any(cell.strip() for cell in cells)


def _clean_cell(cell: str) -> str:
    # Undo the formula guard our own exports add ('+1201..., Bob;'=1), so an export
    # imports back unchanged.
    return unescape_cell(cell).strip()


def _parse_row(cells: list[str], fmt: CsvFormat, spec: _PoolSpec) -> _Contact | str:
    """A contact from one row, or the reason the row cannot be imported."""

    def cell(name: str) -> str:
        index = fmt.columns.get(name)
        if index is None or index >= len(cells):
            return ""
        return _clean_cell(cells[index])

    raw_phone = cell("phone")
    try:
        phone = normalize_phone(raw_phone)
    except InvalidPhoneNumber as exc:
        # The reason quotes the cell: a long one is cut.
        return str(exc).replace(raw_phone, shorten(raw_phone, _REASON_CELL))
    values: dict[str, str] = {}
    first, last = cell("first_name"), cell("last_name")
    if "name" in fmt.columns and not (first and last):
        split_first, split_last = split_name(cell("name"))
        first = first or split_first
        last = last or split_last
    if first:
        values["first_name"] = first
    if last:
        values["last_name"] = last
    if "email" in spec.fields and (email := cell("email")):
        try:
            validate_email(email)
        except ValidationError:
            return f"'{shorten(email, _REASON_CELL)}' is not an email address."
        values["email"] = email
    for name, value in values.items():
        limit = spec.model._meta.get_field(name).max_length
        if limit and len(value) > limit:
            label = name.replace("_", " ")
            return f"The {label} is longer than {limit} characters."
    if "tags" not in fmt.columns:
        return _Contact(phone, values)
    tags = split_tags(cell("tags"))
    if isinstance(tags, str):
        return tags
    return _Contact(phone, values, tags)


def split_tags(text: str) -> tuple[str, ...] | str:
    """The tags of one cell ("volunteers; North  side,") as names, or why they cannot be.

    Separated by ``;`` or ``,``, trimmed, inner spaces made one, empty ones dropped, and
    one name per tag whatever its case (the first spelling wins).
    """
    names: dict[str, str] = {}
    for part in _TAG_SEPARATORS.split(text):
        name = " ".join(part.split())
        if not name:
            continue
        if len(name) > TAG_MAX_LENGTH:
            return f"The tag '{name[:20]}…' is longer than {TAG_MAX_LENGTH} characters."
        names.setdefault(tag_key(name), name)
    return tuple(names.values())


def split_name(full: str) -> tuple[str, str]:
    """'Jane Doe' -> ('Jane', 'Doe'); 'Doe, Jane' -> ('Jane', 'Doe').

    Without a comma the first word is the first name and the rest the last name, which
    keeps surnames like 'de la Cruz' or 'van Dijk' whole.
    """
    full = " ".join(full.split())
    if "," in full:
        last, _, first = full.partition(",")
        return first.strip(), last.strip()
    first, _, last = full.partition(" ")
    return first, last


# --- The pass over the rows -----------------------------------------------------------


ProgressCallback = Callable[[int], None]


def import_preview(
    *,
    path: Path,
    pool: str,
    event_id: int | None = None,
    fmt: CsvFormat | None = None,
    report: IO[str] | None = None,
    on_progress: ProgressCallback | None = None,
) -> ImportSummary:
    """What importing ``path`` would do, row by row, without writing anything.

    ``report``, when given, receives every problem row as CSV (the downloadable
    error report). ``on_progress`` is called with the current line number after each
    batch. Raises ImportFileError when the file cannot be imported at all.
    """
    return _run(
        path=path,
        spec=_pool_spec(pool=pool, event_id=event_id),
        fmt=fmt or inspect_file(path=path),
        write=False,
        report=report,
        on_progress=on_progress,
    )


def import_apply(
    *,
    path: Path,
    pool: str,
    event_id: int | None = None,
    fmt: CsvFormat | None = None,
    report: IO[str] | None = None,
    on_progress: ProgressCallback | None = None,
    consent: ImportConsent | None = None,
) -> ImportSummary:
    """Import ``path``: create new contacts, update changed ones, matched by phone.

    ``consent`` (the file and who imported it) is recorded on new contacts and on
    existing ones that had no consent recorded; without it, a generic "imported from
    <file name>" is recorded.

    Writes in batches of BATCH_SIZE, each in its own transaction, so other writers
    (the send engine) are never locked out for the length of a big file. The file is
    fully checked first, so a file that cannot be read writes nothing. Returns what was
    done, in the same terms as import_preview.
    """
    return _run(
        path=path,
        spec=_pool_spec(pool=pool, event_id=event_id),
        fmt=fmt or inspect_file(path=path),
        write=True,
        report=report,
        on_progress=on_progress,
        consent=consent or ImportConsent(evidence=f"imported from {path.name}"),
    )


def _run(
    *,
    path: Path,
    spec: _PoolSpec,
    fmt: CsvFormat,
    write: bool,
    report: IO[str] | None,
    on_progress: ProgressCallback | None,
    consent: ImportConsent | None = None,
) -> ImportSummary:
    summary = ImportSummary()
    plan = hashlib.sha256()
    first_line_of: dict[str, int] = {}
    batch: list[_Contact] = []
    tags = _TagCache()
    # Same guard as the exports: every cell quoted and safe in a spreadsheet.
    report_writer = csv_writer(report) if report is not None else None
    if report_writer:
        report_writer.writerow(["line", "problem", "reason", *fmt.header])

    def problem(line: int, kind: str, reason: str, cells: list[str]) -> None:
        reason = shorten(reason, _REASON_MAX)
        if len(summary.problems) < SHOWN_PROBLEMS:
            summary.problems.append(Problem(line, kind, reason))
        if report_writer:
            # Cells past the last column a header may have are never read by an import.
            report_writer.writerow([line, kind, reason, *cells[:MAX_COLUMNS]])

    def flush(line: int) -> None:
        if batch:
            plans = (
                _write_batch(spec, batch, consent, tags)
                if write
                else _plan_batch(spec, batch, tags)
            )
            for contact, (action, adds) in zip(batch, plans, strict=True):
                setattr(summary, action, getattr(summary, action) + 1)
                plan.update(_plan_line(action, contact.phone, adds))
            for reason in blocked_phones(phones=(c.phone for c in batch)).values():
                setattr(summary, reason, getattr(summary, reason) + 1)
            batch.clear()
        if on_progress:
            on_progress(line)

    line = fmt.header_line
    for line, cells in _records(path, fmt):
        if not _has_content(cells):
            summary.blank += 1
            continue
        summary.rows += 1
        parsed = _parse_row(cells, fmt, spec)
        if isinstance(parsed, str):
            summary.invalid += 1
            problem(line, "invalid", parsed, cells)
            continue
        first = first_line_of.setdefault(parsed.phone, line)
        if first != line:
            summary.duplicate += 1
            problem(line, "duplicate", f"Same phone as line {first}, which is kept.", cells)
            continue
        batch.append(parsed)
        if len(batch) >= BATCH_SIZE:
            flush(line)
    flush(line)
    summary.plan_digest = plan.hexdigest()
    summary.new_tags = list(tags.new.values())
    return summary


# What one contact's row will do: "new", "updated" or "unchanged", and the names of the
# tags it adds to the contact.
_Plan = tuple[str, tuple[str, ...]]


def _plan_line(action: str, phone: str, adds: tuple[str, ...]) -> bytes:
    # Tags to add are part of the plan, so a tag someone gives the contact between
    # preview and confirm makes the import stop and preview again.
    if not adds:
        return f"{action} {phone}\n".encode()
    return f"{action} {phone} +{';'.join(sorted(map(tag_key, adds)))}\n".encode()


class _TagCache:
    """The tags a file names, each looked up once per pass, keyed by ``tag_key``."""

    def __init__(self) -> None:
        self.tags: dict[str, Tag] = {}
        self.missing: set[str] = set()
        self.new: dict[str, str] = {}  # tags the file brings that did not exist

    def find(self, names: list[str]) -> None:
        """Look up what is not known yet; a preview creates nothing."""
        unknown = [
            n for n in names if tag_key(n) not in self.tags and tag_key(n) not in self.missing
        ]
        if not unknown:
            return
        found = tags_find(names=unknown)
        self.tags.update(found)
        for name in unknown:
            if tag_key(name) not in found:
                self.missing.add(tag_key(name))
                self.new.setdefault(tag_key(name), name)

    def ensure(self, names: list[str]) -> None:
        """Every tag in ``names``, created when missing (each in its own short write)."""
        need = [n for n in names if tag_key(n) not in self.tags]
        if not need:
            return
        found, created = tags_get_or_create(names=need)
        self.tags.update(found)
        for name in created:
            self.new.setdefault(tag_key(name), name)

    def forget(self) -> None:
        self.tags.clear()
        self.missing.clear()


def _existing(spec: _PoolSpec, phones: Iterable[str]) -> dict[str, models.Model]:
    rows = spec.model.objects.filter(**spec.scope, phone__in=list(phones)).only(
        "id", "phone", *spec.fields
    )
    return {row.phone: row for row in rows}


def _plans(
    spec: _PoolSpec, batch: list[_Contact], existing: dict[str, models.Model], tags: _TagCache
) -> list[_Plan]:
    held: dict[int, set[int]] = {}
    tagged_ids = [existing[c.phone].pk for c in batch if c.tags and c.phone in existing]
    if tagged_ids:
        # Only for a file with tags: which of them these contacts already carry.
        links = tag_links(spec.model)
        rows = links.through.objects.filter(
            **{f"{links.contact_column}__in": tagged_ids}
        ).values_list(links.contact_column, links.tag_column)
        for contact_id, tag_id in rows:
            held.setdefault(contact_id, set()).add(tag_id)
    plans: list[_Plan] = []
    for contact in batch:
        row = existing.get(contact.phone)
        adds: tuple[str, ...] = ()
        if contact.tags:
            have = held.get(row.pk, set()) if row is not None else set()
            adds = tuple(
                name
                for name in contact.tags
                if (tag := tags.tags.get(tag_key(name))) is None or tag.pk not in have
            )
        plans.append((_action(contact, row, adds), adds))
    return plans


def _action(contact: _Contact, row: models.Model | None, adds: tuple[str, ...]) -> str:
    if row is None:
        return "new"
    if adds or any(getattr(row, name) != value for name, value in contact.values.items()):
        return "updated"
    return "unchanged"


def _batch_tag_names(batch: list[_Contact]) -> list[str]:
    # One name per tag, spelled as it first appears in the file: that spelling is the
    # one a new tag gets.
    names: dict[str, str] = {}
    for contact in batch:
        for name in contact.tags:
            names.setdefault(tag_key(name), name)
    return list(names.values())


def _plan_batch(spec: _PoolSpec, batch: list[_Contact], tags: _TagCache) -> list[_Plan]:
    if names := _batch_tag_names(batch):
        tags.find(names)
    existing = _existing(spec, (c.phone for c in batch))
    return _plans(spec, batch, existing, tags)


def _write_batch(
    spec: _PoolSpec, batch: list[_Contact], consent: ImportConsent | None, tags: _TagCache
) -> list[_Plan]:
    names = _batch_tag_names(batch)
    try:
        if names:
            tags.ensure(names)
        return _write_batch_once(spec, batch, consent, tags)
    except IntegrityError:
        # Someone added one of these phones between our read and our insert (or deleted
        # a tag we had just looked up); read the batch again and update that row instead
        # of duplicating it.
        tags.forget()
        if names:
            tags.ensure(names)
        return _write_batch_once(spec, batch, consent, tags)


@transaction.atomic
def _write_batch_once(
    spec: _PoolSpec, batch: list[_Contact], consent: ImportConsent | None, tags: _TagCache
) -> list[_Plan]:
    existing = _existing(spec, (c.phone for c in batch))
    plans = _plans(spec, batch, existing, tags)
    now = timezone.now()
    consent_fields = consent.fields(now) if consent else {}
    if consent and existing:
        # Contacts already there keep the consent they have; those without one get the
        # file's. Not part of the plan: it never turns "unchanged" into "updated".
        spec.model.objects.filter(**spec.scope, phone__in=list(existing), consent_source="").update(
            **consent_fields
        )
    created: list[models.Model] = []
    changed: list[models.Model] = []
    changed_fields: set[str] = set()
    tagged: list[tuple[models.Model, tuple[str, ...]]] = []
    for contact, (action, adds) in zip(batch, plans, strict=True):
        if action == "new":
            row = spec.model(**spec.scope, phone=contact.phone, **contact.values, **consent_fields)
            created.append(row)
        elif action == "updated":
            row = existing[contact.phone]
            for name, value in contact.values.items():
                setattr(row, name, value)
            changed_fields.update(contact.values)
            if spec.touch_updated_at:
                row.updated_at = now  # type: ignore[attr-defined]
            changed.append(row)
        else:
            continue
        if adds:
            tagged.append((row, adds))
    if created:
        spec.model.objects.bulk_create(created, batch_size=BATCH_SIZE)
    if changed:
        if spec.touch_updated_at:
            changed_fields.add("updated_at")
        # A registration whose only change is a tag has no column to write.
        if changed_fields:
            spec.model.objects.bulk_update(changed, sorted(changed_fields), batch_size=BATCH_SIZE)
    if tagged:
        _add_tag_links(spec, tagged, tags)
    return plans


def _add_tag_links(
    spec: _PoolSpec, tagged: list[tuple[models.Model, tuple[str, ...]]], tags: _TagCache
) -> None:
    if any(row.pk is None for row, _ in tagged):
        # A database that does not return the new rows' ids from a bulk insert.
        ids = {
            phone: row.pk for phone, row in _existing(spec, (r.phone for r, _ in tagged)).items()
        }
        for row, _ in tagged:
            row.pk = ids[row.phone]  # type: ignore[attr-defined]
    pairs = [(row.pk, tags.tags[tag_key(name)].pk) for row, adds in tagged for name in adds]
    # A link someone else added meanwhile is skipped, never duplicated.
    tag_links_insert(model=spec.model, pairs=pairs)


def format_summary(summary: ImportSummary, *, applied: bool) -> list[str]:
    """The summary as lines of text, for the command line."""
    counts = summary.counts()
    verb = "Imported" if applied else "Would import"
    lines = [
        f"{verb}: {counts['new']} new, {counts['updated']} updated, "
        f"{counts['unchanged']} unchanged.",
        f"Skipped: {counts['invalid']} invalid, {counts['duplicate']} duplicate in the file, "
        f"{counts['blank']} blank lines.",
        f"Of the contacts in the file, {counts['unsubscribed']} are unsubscribed and "
        f"{counts['suppressed']} suppressed: they are kept but get no blasts.",
    ]
    if summary.new_tags:
        verb = "Created" if applied else "Would create"
        shown = ", ".join(f"'{name}'" for name in summary.new_tags[:20])
        more = f" and {len(summary.new_tags) - 20} more" if len(summary.new_tags) > 20 else ""
        count = len(summary.new_tags)
        lines.append(f"{verb} {count} new tag{'s' if count != 1 else ''}: {shown}{more}.")
    return lines


def too_big_message(size: int) -> str:
    limit_mb = settings.IMPORT_MAX_BYTES / (1024 * 1024)
    return (
        f"The file is {size / (1024 * 1024):.1f} MB; the largest import is {limit_mb:.0f} MB "
        "(IMPORT_MAX_BYTES). Split it into smaller files."
    )
