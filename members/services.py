"""Tags on contacts: finding and creating tags whatever their case, adding and removing them.

Members and registrations both carry tags (``tags`` many-to-many to ``Tag``); every
function here takes the contacts as a queryset of either model, so the admin's actions
and the importer share one implementation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connection, models, transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Lower

from members.models import Tag

TAG_MAX_LENGTH = Tag._meta.get_field("name").max_length or 50
# Rows written per transaction, so a "select all" over 100k contacts never holds
# SQLite's write lock for more than a moment.
_CHUNK = 1000


class TagNameError(ValueError):
    """A tag name that cannot be used; the message tells a person why."""


@dataclass(frozen=True)
class TagResult:
    """What adding or removing a tag did.

    ``changed``: contacts that got (or lost) the tag; ``unchanged``: contacts that
    already had it (or did not have it); ``created``: the tag itself is new.
    """

    tag: Tag
    changed: int
    unchanged: int
    created: bool = False


@dataclass(frozen=True)
class TagLinks:
    """Where a model keeps its tags: the through table and its two id columns."""

    through: type[models.Model]
    contact_column: str  # "member_id" or "registration_id"
    tag_column: str  # "tag_id"


def tag_links(model: type[models.Model]) -> TagLinks:
    field = model._meta.get_field("tags")
    return TagLinks(
        through=field.remote_field.through,  # type: ignore[union-attr]
        contact_column=field.m2m_column_name(),  # type: ignore[union-attr]
        tag_column=field.m2m_reverse_name(),  # type: ignore[union-attr]
    )


def tag_key(name: str) -> str:
    """What two spellings of one tag have in common: "Volunteers" and "volunteers"."""
    return name.lower()


def tag_name_clean(name: str) -> str:
    """``name`` trimmed, inner runs of spaces made one; TagNameError if empty or too long."""
    cleaned = " ".join(str(name).split())
    if not cleaned:
        raise TagNameError("Type a tag name.")
    if len(cleaned) > TAG_MAX_LENGTH:
        raise TagNameError(
            f"A tag is at most {TAG_MAX_LENGTH} characters; '{cleaned[:20]}…' has {len(cleaned)}."
        )
    return cleaned


def tags_find(*, names: Iterable[str]) -> dict[str, Tag]:
    """The existing tags among ``names``, keyed by ``tag_key``, matched in any case."""
    names = {name for name in names if name}
    if not names:
        return {}
    keys = {tag_key(name) for name in names}
    # Lower() in the database is what the unique constraint compares; the exact names
    # catch what it does not fold (SQLite's lower() knows ASCII only).
    found = Tag.objects.annotate(key=Lower("name")).filter(Q(key__in=keys) | Q(name__in=names))
    return {tag_key(tag.name): tag for tag in found if tag_key(tag.name) in keys}


def tags_get_or_create(*, names: Iterable[str]) -> tuple[dict[str, Tag], list[str]]:
    """Every tag in ``names`` (already cleaned), creating those missing.

    Returns the tags keyed by ``tag_key`` and the names of the tags created. Safe when
    someone creates the same tag at the same moment, in whatever case: the insert skips
    a name the unique constraint already holds, and the tag is read back.
    """
    wanted: dict[str, str] = {}
    for name in names:
        wanted.setdefault(tag_key(name), name)
    tags = tags_find(names=wanted.values())
    missing = [name for key, name in wanted.items() if key not in tags]
    if not missing:
        return tags, []
    Tag.objects.bulk_create([Tag(name=name) for name in missing], ignore_conflicts=True)
    tags = tags_find(names=wanted.values())
    lost = [name for key, name in wanted.items() if key not in tags]
    if lost:
        # Only a tag deleted in the instant between our insert and our read.
        raise TagNameError(f"The tag '{lost[0]}' could not be saved; try again.")
    # A tag someone else created meanwhile in another case is not ours to report as new.
    created = [name for name in missing if tags[tag_key(name)].name == name]
    return tags, created


def tag_get_or_create(*, name: str) -> tuple[Tag, bool]:
    """The tag called ``name`` in any case ("Volunteers" finds "volunteers"), or a new one."""
    cleaned = tag_name_clean(name)
    tags, created = tags_get_or_create(names=[cleaned])
    return tags[tag_key(cleaned)], bool(created)


def _id_chunks(contacts: QuerySet[Any]) -> Iterator[list[int]]:
    ids = list(contacts.prefetch_related(None).order_by().values_list("pk", flat=True).distinct())
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def tag_add(*, contacts: QuerySet[Any], name: str) -> TagResult:
    """Give every contact in ``contacts`` the tag ``name``, creating the tag if needed.

    The tag is matched in any case. Contacts that already have it are counted, not
    duplicated. Two staff tagging the same contacts at once each write only what the
    other has not: the tag's row is locked per chunk, and the insert skips pairs that
    exist anyway (an import may add them without that lock).
    """
    tag, created = tag_get_or_create(name=name)
    links = tag_links(contacts.model)
    changed = unchanged = 0
    for chunk in _id_chunks(contacts):
        with transaction.atomic():
            # Staff tagging with this tag take turns, so each counts only what it wrote.
            list(Tag.objects.select_for_update().filter(pk=tag.pk).values_list("pk"))
            have = set(
                links.through.objects.filter(
                    **{links.tag_column: tag.pk, f"{links.contact_column}__in": chunk}
                ).values_list(links.contact_column, flat=True)
            )
            rows = [(pk, tag.pk) for pk in chunk if pk not in have]
            tag_links_insert(model=contacts.model, pairs=rows)
        changed += len(rows)
        unchanged += len(have)
    return TagResult(tag=tag, changed=changed, unchanged=unchanged, created=created)


def tag_remove(*, contacts: QuerySet[Any], tag: Tag) -> TagResult:
    """Take ``tag`` off every contact in ``contacts``; the tag itself stays."""
    links = tag_links(contacts.model)
    changed = total = 0
    for chunk in _id_chunks(contacts):
        total += len(chunk)
        with transaction.atomic():
            changed += links.through.objects.filter(
                **{links.tag_column: tag.pk, f"{links.contact_column}__in": chunk}
            ).delete()[0]
    return TagResult(tag=tag, changed=changed, unchanged=total - changed)


def tag_links_insert(*, model: type[models.Model], pairs: list[tuple[int, int]]) -> None:
    """Link contacts to tags, (contact id, tag id) each, skipping links that exist.

    One prepared statement for all pairs and no model objects: an import writes a link
    per tag per row, and building 150k through-model instances costs more than the
    rows themselves. ON CONFLICT DO NOTHING (SQLite and PostgreSQL) makes a link someone
    else added meanwhile a no-op, never a duplicate or an error.
    """
    if not pairs:
        return
    links = tag_links(model)
    quote = connection.ops.quote_name
    # Names come from the model's own metadata, never from input.
    sql = (
        f"INSERT INTO {quote(links.through._meta.db_table)} "  # noqa: S608
        f"({quote(links.contact_column)}, {quote(links.tag_column)}) VALUES (%s, %s) "
        "ON CONFLICT DO NOTHING"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, pairs)


def tag_names_by_contact(*, model: type[models.Model], ids: Iterable[int]) -> dict[int, list[str]]:
    """Tag names of each contact among ``ids``, in name order, in one query."""
    links = tag_links(model)
    names: dict[int, list[str]] = {}
    rows = (
        links.through.objects.filter(**{f"{links.contact_column}__in": list(ids)})
        .order_by("tag__name")
        .values_list(links.contact_column, "tag__name")
    )
    for contact_id, name in rows:
        names.setdefault(contact_id, []).append(name)
    return names
