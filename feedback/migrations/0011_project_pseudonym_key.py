"""A pseudonym key per project (random, 256 bits), and the people of earlier Label Studio
imports renamed with it: stand-in users were named by an unkeyed hash of the person's email or
id, one user across projects, with the email kept in the import's audit row."""

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import migrations, models

import feedback.models


def keys_fill(apps, schema_editor):
    """A key of its own for every project (a field default would give them all one)."""
    Project = apps.get_model("feedback", "Project")
    for project in Project.objects.all():
        project.pseudonym_key = feedback.models.pseudonym_key_new()
        project.save(update_fields=["pseudonym_key"])


def imported_annotators_rename(apps, schema_editor):
    """Every imported label's stand-in as an import names it now (a user per project, named with
    the project's key), and its audit row without the email or id. The first project of an old
    stand-in keeps the user, renamed; each further project gets a new one with its labels."""
    from feedback.imports import imported_username

    LabelAudit = apps.get_model("feedback", "LabelAudit")
    PreferenceLabel = apps.get_model("feedback", "PreferenceLabel")
    User = apps.get_model(settings.AUTH_USER_MODEL)
    renamed = set()  # ids of the old stand-ins already renamed
    users = {}  # new name -> user
    audits = (
        LabelAudit.objects.filter(action="imported", after__has_key="external_annotator")
        .select_related("label__comparison__project")
        .order_by("id")
    )
    for audit in audits:
        label = audit.label
        after = dict(audit.after)
        username = imported_username(
            key=label.comparison.project.pseudonym_key,
            source=after["source"],
            ref=str(after.pop("external_annotator")),
        )
        if username not in users:
            if label.annotator_id in renamed:
                users[username] = User.objects.create(
                    username=username, is_active=False, password=make_password(None)
                )
            else:
                User.objects.filter(pk=label.annotator_id).update(username=username)
                renamed.add(label.annotator_id)
                users[username] = User.objects.get(pk=label.annotator_id)
        user = users[username]
        if audit.actor_id == label.annotator_id:
            audit.actor = user
        PreferenceLabel.objects.filter(pk=label.pk).update(annotator=user)
        audit.after = after
        audit.save(update_fields=["after", "actor"])


class Migration(migrations.Migration):

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ('feedback', '0010_independent_judge'),
    ]

    operations = [
        migrations.AddField(
            model_name='project',
            name='pseudonym_key',
            field=models.CharField(default='', editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(keys_fill, migrations.RunPython.noop),
        migrations.AlterField(
            model_name='project',
            name='pseudonym_key',
            field=models.CharField(
                default=feedback.models.pseudonym_key_new, editable=False, max_length=64
            ),
        ),
        # Emails and ids removed cannot come back: going back keeps the new names.
        migrations.RunPython(imported_annotators_rename, migrations.RunPython.noop),
    ]
