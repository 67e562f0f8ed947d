from datetime import datetime

import pytest
from django.test import override_settings
from django.utils import timezone

from messaging.templating import TemplateError, recipient_values, template_parse


def test_placeholders_are_filled_per_recipient():
    template = template_parse("Hi {first_name} {last_name} ({full_name}) from {org_name}")
    with override_settings(ORG_NAME="Northside Pantry"):
        values = recipient_values(first_name="Ana", last_name="Diaz")
    assert template.render(values) == "Hi Ana Diaz (Ana Diaz) from Northside Pantry"


def test_event_placeholders():
    template = template_parse("{event_name} is {event_date} at {event_location}")
    with override_settings(TIME_ZONE="America/New_York"):
        starts = timezone.make_aware(datetime(2026, 12, 5, 18, 30))
        values = recipient_values(
            first_name="A",
            last_name="B",
            event_name="Winter Fair",
            event_starts_at=starts,
            event_location="Hall 2",
        )
        assert template.render(values) == "Winter Fair is Sat Dec 5 at 6:30 PM at Hall 2"
    assert template.uses_event_fields


def test_doubled_braces_are_literal():
    assert template_parse("Use {{code}} now").render({}) == "Use {code} now"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Hi {name}", "Unknown placeholder {name}"),
        ("Hi {first_name.__class__}", "Unknown placeholder"),
        ("Hi {first_name[0]}", "Unknown placeholder"),
        ("Hi {first_name!r}", "Unknown placeholder {first_name!r}"),
        ("Hi {first_name:>10}", "Unknown placeholder {first_name:>10}"),
        ("Hi {}", "empty placeholder"),
        ("Hi {first_name", "stray brace"),
        ("Hi first_name}", "stray brace"),
        ("   ", "empty"),
    ],
)
def test_bad_templates_are_rejected_with_a_clear_message(text, message):
    with pytest.raises(TemplateError, match=message.replace("{", r"\{").replace("[", r"\[")):
        template_parse(text)


def test_text_is_never_run_as_a_django_template():
    with pytest.raises(TemplateError, match="Unknown placeholder"):
        template_parse("{% if 1 %}x{% endif %}")
    assert template_parse("{{ settings.SECRET_KEY }}").render({}) == "{ settings.SECRET_KEY }"
