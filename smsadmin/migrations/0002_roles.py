from django.db import migrations

from smsadmin.roles import sync_groups


class Migration(migrations.Migration):
    dependencies = [
        ("smsadmin", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("members", "0001_initial"),
        ("events", "0001_initial"),
        ("messaging", "0002_initial"),
        ("suppression", "0001_initial"),
    ]

    operations = [migrations.RunPython(sync_groups, migrations.RunPython.noop)]
