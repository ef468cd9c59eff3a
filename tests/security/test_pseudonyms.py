"""Pseudonyms of people in exports and imports: keyed per project with a random key of the
project's own (not SECRET_KEY, public in development), 128 bits of HMAC-SHA256, rotatable; a
Label Studio import keeps no email or external id."""

from __future__ import annotations

import hashlib
import hmac
import json
import re

import pytest
from django.apps import apps
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.core import serializers
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from feedback.imports import imported_username, labels_import_file
from feedback.models import LabelAudit, PreferenceLabel, Project
from feedback.services import membership_set, project_create, project_pseudonym_key_rotate
from tests.conftest import PROMPTS
from tests.factories import make_comparisons
from tests.feedback.test_imports import LABEL_STUDIO
from tests.training.test_exports import vote
from training.exports import vote_rows

KEY = re.compile(r"[0-9a-f]{64}")
# Who labelled what in the Label Studio fixture: Label Studio user 7 (by email) twice, user 8.
REFS = ["ana@example.org", "8", "ana@example.org"]
BEFORE_KEYS = "0010_independent_judge"


@pytest.fixture
def other(project):
    from feedback.services import prompts_import

    other = project_create(slug="other", name="Other", base_model="unused-in-this-test")
    prompts_import(project=other, records=PROMPTS, source="test")
    return other


def label_in(project, user) -> None:
    make_comparisons(project, [("first answer", "second answer")])
    membership_set(project=project, user=user, role="annotator")
    vote(project, user, "a")


def annotators_of(project) -> list[str]:
    return [row["annotator"] for row in vote_rows(project=project)]


def stored_rows() -> str:
    """Every row of Hone's own tables and of the users, as JSON."""
    models = [
        *apps.get_app_config("feedback").get_models(),
        *apps.get_app_config("training").get_models(),
        get_user_model(),
    ]
    return "".join(serializers.serialize("json", m.objects.all()) for m in models)


def unkeyed_name(ref: str) -> str:
    """The stand-in's name as imports gave it before projects had keys."""
    digest = hashlib.sha256(("label-studio\0" + ref).encode()).hexdigest()
    return f"imported-label-studio-{digest[:12]}"


def test_one_annotator_has_unrelated_pseudonyms_in_two_projects(
    project, other, annotator, settings
):
    label_in(project, annotator)
    label_in(other, annotator)
    in_project, in_other = annotators_of(project), annotators_of(other)
    settings.SECRET_KEY = "another deployment"

    assert in_project != in_other
    assert (annotators_of(project), annotators_of(other)) == (in_project, in_other)
    assert KEY.fullmatch(project.pseudonym_key) and KEY.fullmatch(other.pseudonym_key)
    assert project.pseudonym_key != other.pseudonym_key


def test_a_pseudonym_is_128_bits_of_hmac_sha256_under_the_project_key(project, annotator):
    label_in(project, annotator)
    digest = hmac.new(
        bytes.fromhex(project.pseudonym_key), f"annotator:{annotator.pk}".encode(), hashlib.sha256
    ).hexdigest()

    assert KEY.fullmatch(project.pseudonym_key)
    assert annotators_of(project) == [f"ann_{digest[:32]}"]


def test_rotating_the_key_names_every_annotator_anew(project, other, annotator):
    label_in(project, annotator)
    label_in(other, annotator)
    before, other_before, old_key = (
        annotators_of(project),
        annotators_of(other),
        project.pseudonym_key,
    )

    project_pseudonym_key_rotate(project=project)
    project.refresh_from_db()

    assert KEY.fullmatch(project.pseudonym_key) and project.pseudonym_key != old_key
    assert annotators_of(project) == [f"ann_{project.pseudonym(f'annotator:{annotator.pk}')}"]
    assert annotators_of(project) != before
    assert annotators_of(other) == other_before  # the other project is untouched


def test_an_admin_rotates_keys_from_the_project_list(project, other, make_user, client):
    boss = make_user("root", is_staff=True, is_superuser=True)
    client.force_login(boss)
    keys = {p.slug: p.pseudonym_key for p in Project.objects.all()}

    response = client.post(
        "/admin/feedback/project/",
        {"action": "pseudonym_key_rotate", "_selected_action": [project.pk]},
        follow=True,
    )

    after = {p.slug: p.pseudonym_key for p in Project.objects.all()}
    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == [
        "New pseudonym keys for 1 project(s): their exports name every annotator anew and "
        "cannot be joined with earlier ones."
    ]
    assert (after["demo"] != keys["demo"], after["other"]) == (True, keys["other"])
    assert list(LogEntry.objects.values_list("object_id", "change_message")) == [
        (str(project.pk), "Rotated the pseudonym key.")
    ]


def test_a_label_studio_import_keeps_no_email_and_names_people_with_the_project_key(project, other):
    for target in (project, other):
        labels_import_file(project=target, data=LABEL_STUDIO.read_bytes(), name="ls.json")

    stored = stored_rows()
    assert "ana@example.org" not in stored
    assert unkeyed_name("ana@example.org") not in stored
    for target in (project, other):
        labels = PreferenceLabel.objects.filter(comparison__project=target).order_by("id")
        assert [label.annotator.username for label in labels] == [
            imported_username(key=target.pseudonym_key, source="label-studio", ref=ref)
            for ref in REFS
        ]
    # a person imported into two projects is two unrelated stand-ins
    assert not set(
        PreferenceLabel.objects.filter(comparison__project=project).values_list(
            "annotator", flat=True
        )
    ) & set(
        PreferenceLabel.objects.filter(comparison__project=other).values_list(
            "annotator", flat=True
        )
    )


@pytest.mark.django_db(transaction=True)
def test_the_migration_keys_every_project_and_renames_earlier_imports(project, other):
    for target in (project, other):
        labels_import_file(project=target, data=LABEL_STUDIO.read_bytes(), name="ls.json")
    labels = list(PreferenceLabel.objects.order_by("id").values_list("id", "comparison__project"))
    refs = dict(zip([pk for pk, _ in labels], REFS + REFS, strict=True))
    executor = MigrationExecutor(connection)
    executor.migrate([("feedback", BEFORE_KEYS)])
    try:
        # What imports left before the keys: one stand-in per person for every project, named
        # by an unkeyed hash, the person's email or id in the audit row.
        old = executor.loader.project_state([("feedback", BEFORE_KEYS)]).apps
        User = old.get_model("auth", "User")
        stand_ins = set(
            User.objects.filter(username__startswith="imported-").values_list("pk", flat=True)
        )
        for audit in old.get_model("feedback", "LabelAudit").objects.all():
            ref = refs[audit.label_id]
            user, _ = User.objects.get_or_create(
                username=unkeyed_name(ref), defaults={"is_active": False, "password": "!"}
            )
            old.get_model("feedback", "PreferenceLabel").objects.filter(pk=audit.label_id).update(
                annotator=user
            )
            audit.actor = user
            audit.after = {**audit.after, "external_annotator": ref}
            audit.save()
        User.objects.filter(pk__in=stand_ins).delete()
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    keys = dict(Project.objects.values_list("pk", "pseudonym_key"))
    assert [bool(KEY.fullmatch(key)) for key in keys.values()] == [True, True]
    assert keys[project.pk] != keys[other.pk]
    assert {
        pk: (user.username, actor.username)
        for pk, user, actor in (
            (label.pk, label.annotator, label.audits.get().actor)
            for label in PreferenceLabel.objects.select_related("annotator")
        )
    } == {
        pk: (name, name)
        for pk, project_id in labels
        for name in [imported_username(key=keys[project_id], source="label-studio", ref=refs[pk])]
    }
    assert get_user_model().objects.filter(username__startswith="imported-").count() == 4
    assert "ana@example.org" not in stored_rows()
    assert [audit.after for audit in LabelAudit.objects.order_by("id")][:1] == [
        {"choice": "a", "strength": 2, "source": "label-studio", "file": "ls.json", "line": 1}
    ]
    assert (
        json.dumps(list(LabelAudit.objects.values_list("after", flat=True))).count(
            "external_annotator"
        )
        == 0
    )
