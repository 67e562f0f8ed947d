from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import model_ngettext
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from members.consent_admin import ConsentAdminMixin
from members.import_admin import ImportJobAdmin, can_import, upload_view
from members.models import ImportJob, Member, Tag
from members.services import (
    TAG_MAX_LENGTH,
    TagNameError,
    tag_add,
    tag_key,
    tag_links,
    tag_name_clean,
    tag_remove,
    tags_find,
)
from smsadmin.admin_utils import FastChangeList, PhoneSearchMixin, phone_column

__all__ = ["ImportJobAdmin", "MemberAdmin", "TagActionsMixin", "TagAdmin"]


def _link_count(model: type[Any]) -> Coalesce:
    """How many contacts of ``model`` carry each tag, as a subquery per tag row.

    A subquery rather than Count() over two joins, which would multiply members by
    registrations for every tag.
    """
    links = tag_links(model)
    per_tag = (
        links.through.objects.filter(**{links.tag_column: OuterRef("pk")})
        .order_by()
        .values(links.tag_column)
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(per_tag), 0)


class TagForm(forms.ModelForm):
    class Meta:
        model = Tag
        fields = ("name",)

    def clean_name(self) -> str:
        try:
            name = tag_name_clean(self.cleaned_data["name"])
        except TagNameError as exc:
            raise forms.ValidationError(str(exc)) from None
        same = tags_find(names=[name]).get(tag_key(name))
        if same is not None and same.pk != self.instance.pk:
            raise forms.ValidationError(
                f"There is already a tag '{same.name}'; tags are the same whatever their case."
            )
        return name


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    form = TagForm
    list_display = ("name", "member_count", "registration_count", "created_at")
    search_fields = ("name",)
    readonly_fields = ("created_at",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tag]:
        from events.models import Registration

        return (
            super()
            .get_queryset(request)
            .annotate(_members=_link_count(Member), _registrations=_link_count(Registration))
        )

    @admin.display(description="members", ordering="_members")
    def member_count(self, obj: Tag) -> str:
        url = reverse("admin:members_member_changelist") + f"?tags__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj._members)  # type: ignore[attr-defined]

    @admin.display(description="registrations", ordering="_registrations")
    def registration_count(self, obj: Tag) -> str:
        url = reverse("admin:events_registration_changelist") + f"?tags__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj._registrations)  # type: ignore[attr-defined]


class TagAddForm(forms.Form):
    tag = forms.ModelChoiceField(
        queryset=Tag.objects.all(), required=False, label="Existing tag", empty_label="(none)"
    )
    new_name = forms.CharField(
        required=False,
        label="or a new tag",
        help_text=(
            f"At most {TAG_MAX_LENGTH} characters. A name that exists in another case "
            "(Volunteers, volunteers) is that tag."
        ),
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        tag, typed = data.get("tag"), (data.get("new_name") or "").strip()
        if tag and typed:
            self.add_error("new_name", "Choose an existing tag or type a name, not both.")
        elif not tag and not typed:
            self.add_error("tag", "Choose a tag, or type the name of a new one.")
        elif typed:
            try:
                name = tag_name_clean(typed)
            except TagNameError as exc:
                self.add_error("new_name", str(exc))
            else:
                data["name"] = name
                exists = tag_key(name) in tags_find(names=[name])
                if not exists and not self.user.has_perm("members.add_tag"):
                    self.add_error(
                        "new_name", f"There is no tag '{name}', and you may not create tags."
                    )
        else:
            data["name"] = tag.name
        return data


class TagRemoveForm(forms.Form):
    tag = forms.ModelChoiceField(
        queryset=Tag.objects.all(),
        label="Tag",
        error_messages={"required": "Choose the tag to remove."},
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)


class TagActionsMixin:
    """Tags on a contact list: a column (prefetched), a filter, and add/remove actions.

    Shared by members and registrations; the actions show a page asking which tag and
    change nothing until it is answered without errors.
    """

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).prefetch_related("tags")  # type: ignore[misc]

    @admin.display(description="tags")
    def tag_list(self, obj: Any) -> str:
        return ", ".join(tag.name for tag in obj.tags.all())

    @admin.action(
        description="Add a tag to selected %(verbose_name_plural)s", permissions=["change"]
    )
    def tag_add_action(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        return self._tag_action(request, queryset, adding=True)

    @admin.action(
        description="Remove a tag from selected %(verbose_name_plural)s", permissions=["change"]
    )
    def tag_remove_action(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> HttpResponse | None:
        return self._tag_action(request, queryset, adding=False)

    def _tag_action(
        self, request: HttpRequest, queryset: QuerySet[Any], *, adding: bool
    ) -> HttpResponse | None:
        form_class = TagAddForm if adding else TagRemoveForm
        if "apply" in request.POST:
            form = form_class(request.POST, user=request.user)
            if form.is_valid():
                try:
                    message = self._tag_apply(queryset, form.cleaned_data, adding=adding)
                except TagNameError as exc:
                    form.add_error("new_name" if adding else "tag", str(exc))
                else:
                    self.message_user(request, message, messages.SUCCESS)  # type: ignore[attr-defined]
                    return None
        else:
            form = form_class(user=request.user)
        opts = queryset.model._meta
        count = queryset.count()
        verb = "Add a tag to" if adding else "Remove a tag from"
        context = {
            **self.admin_site.each_context(request),  # type: ignore[attr-defined]
            "title": f"{verb} {count} {model_ngettext(opts, count)}",
            "opts": opts,
            "form": form,
            "adding": adding,
            "action": request.POST.get("action", ""),
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "count": count,
            "noun": model_ngettext(opts, count),
            "changelist_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
        }
        return TemplateResponse(request, "admin/members/tag_action.html", context)

    def _tag_apply(self, queryset: QuerySet[Any], data: dict[str, Any], *, adding: bool) -> str:
        opts = queryset.model._meta
        if adding:
            result = tag_add(contacts=queryset, name=data["name"])
            noun = model_ngettext(opts, result.changed)
            message = f"Tagged {result.changed} {noun} '{result.tag.name}'"
            if result.unchanged:
                message += f" ({result.unchanged} already had it)"
            message += "."
            if result.created:
                message += " The tag is new."
            return message
        result = tag_remove(contacts=queryset, tag=data["tag"])
        noun = model_ngettext(opts, result.changed)
        message = f"Removed the tag '{result.tag.name}' from {result.changed} {noun}"
        if result.unchanged:
            message += f" ({result.unchanged} did not have it)"
        return message + "."


@admin.register(Member)
class MemberAdmin(
    TagActionsMixin, ConsentAdminMixin, PhoneSearchMixin, FastChangeList, admin.ModelAdmin
):
    list_display = (
        "last_name",
        "first_name",
        phone_column(),
        "email",
        "is_active",
        "tag_list",
        "consent_summary",
        "created_at",
    )
    list_display_links = ("last_name", "first_name")
    list_filter = ("is_active", "tags", "consent_source")
    search_fields = ("first_name", "last_name", "=phone", "email")
    readonly_fields = ("created_at", "updated_at")
    autocomplete_fields = ("tags",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    ("first_name", "last_name"),
                    "phone",
                    "email",
                    "is_active",
                    "tags",
                    "notes",
                    ("created_at", "updated_at"),
                )
            },
        ),
        ConsentAdminMixin.consent_fieldset,
    )
    actions = ["export_csv", "tag_add_action", "tag_remove_action"]

    def get_urls(self):  # type: ignore[no-untyped-def]
        return [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="members_member_import",
            ),
            *super().get_urls(),
        ]

    def import_view(self, request: HttpRequest) -> HttpResponse:
        return upload_view(request, model_admin=self, pool=ImportJob.Pool.MEMBERS, event=None)

    import_view.csrf_exempt = True  # type: ignore[attr-defined]  # upload_view checks it

    def changelist_view(self, request, extra_context=None):  # type: ignore[no-untyped-def]
        extra_context = {
            "can_import": can_import(request.user, ImportJob.Pool.MEMBERS),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context)
