"""Changes to who may act and to what a project trains on are audited, whichever way they
are made: the admin, the API, the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.serializers.json import DjangoJSONEncoder
from rest_framework.authtoken.models import Token

from feedback.models import PROJECT_SETTINGS, AuditEvent, Membership
from feedback.services import membership_set

API = "/api/projects/demo/"
LABEL_STUDIO = Path(__file__).parent.parent / "fixtures" / "label_studio_pairwise.json"


def events(action: str) -> list[tuple]:
    return [
        (e.actor.username if e.actor else None, e.target_type, e.target_id, e.before, e.after)
        for e in AuditEvent.objects.filter(action=action).select_related("actor").order_by("id")
    ]


def stamp(moment) -> str:
    """A time as the audit log stores it (JSON)."""
    return DjangoJSONEncoder().default(moment)


def project_form(project, **changes) -> dict:
    """The admin's change form of `project` as a browser posts it, with `changes`."""
    data: dict = {"_save": "Save"}
    for names in PROJECT_SETTINGS.values():
        for name in names:
            value = getattr(project, name)
            if isinstance(value, bool):
                if value:
                    data[name] = "on"
            elif name == "training_config":
                data[name] = json.dumps(value)
            else:
                data[name] = "" if value is None else str(value)
    members = list(project.memberships.order_by("id"))
    data.update(
        {
            "memberships-TOTAL_FORMS": len(members),
            "memberships-INITIAL_FORMS": len(members),
            "memberships-MIN_NUM_FORMS": 0,
            "memberships-MAX_NUM_FORMS": 1000,
        }
    )
    for i, member in enumerate(members):
        data[f"memberships-{i}-id"] = member.pk
        data[f"memberships-{i}-project"] = project.pk
        data[f"memberships-{i}-user"] = member.user_id
        data[f"memberships-{i}-role"] = member.role
    data.update(changes)
    return data


@pytest.fixture
def change_page(project):
    return f"/admin/feedback/project/{project.pk}/change/"


def test_a_training_config_change_in_the_admin_is_audited(project, admin_client, change_page):
    config = {"ppo": {"total_episodes": 64}}

    response = admin_client.post(
        change_page,
        project_form(project, training_config=json.dumps(config), name="Demo 2"),
    )

    project.refresh_from_db()
    assert response.status_code == 302
    assert (project.training_config, project.name) == (config, "Demo 2")
    assert events("project.training_config") == [
        (
            "admin",
            "feedback.project",
            project.pk,
            {"training_config": {}},
            {"training_config": config},
        )
    ]
    assert events("project.settings") == [
        ("admin", "feedback.project", project.pk, {"name": "Demo"}, {"name": "Demo 2"})
    ]


def test_members_added_changed_and_removed_in_the_admin(
    project, annotator, admin_member, make_user, admin_client, change_page
):
    newcomer = make_user("newcomer")
    before = AuditEvent.objects.filter(action__startswith="membership.").count()
    data = project_form(project)
    members = list(project.memberships.order_by("id"))
    boss_form = next(i for i, m in enumerate(members) if m.user == admin_member)
    ann_form = next(i for i, m in enumerate(members) if m.user == annotator)
    data.update(
        {
            f"memberships-{boss_form}-DELETE": "on",
            f"memberships-{ann_form}-role": "reviewer",
            "memberships-TOTAL_FORMS": len(members) + 1,
            f"memberships-{len(members)}-project": project.pk,
            f"memberships-{len(members)}-user": newcomer.pk,
            f"memberships-{len(members)}-role": "annotator",
        }
    )

    response = admin_client.post(change_page, data)

    assert response.status_code == 302
    assert dict(project.memberships.values_list("user__username", "role")) == {
        "ann": "reviewer",
        "newcomer": "annotator",
    }
    assert AuditEvent.objects.filter(action__startswith="membership.").count() == before + 3
    assert events("membership.remove") == [
        (
            "admin",
            "auth.user",
            admin_member.pk,
            {"user": admin_member.pk, "role": "admin"},
            None,
        )
    ]
    assert events("membership.set")[-2:] == [
        (
            "admin",
            "auth.user",
            annotator.pk,
            {"user": annotator.pk, "role": "annotator"},
            {"user": annotator.pk, "role": "reviewer"},
        ),
        ("admin", "auth.user", newcomer.pk, None, {"user": newcomer.pk, "role": "annotator"}),
    ]


def test_setting_the_same_role_again_records_nothing(project, annotator, admin_member):
    before = AuditEvent.objects.count()

    membership_set(project=project, user=annotator, role="annotator", actor=admin_member)

    assert AuditEvent.objects.count() == before
    assert Membership.objects.get(user=annotator).role == "annotator"


def test_imports_of_prompts_and_labels(project, admin_member, token_client):
    api = token_client(admin_member)
    upload = SimpleUploadedFile("p.jsonl", b'{"prompt": "One"}\n{"prompt": "Two"}\n')
    api.post(API + "prompts/import/", {"file": upload}, format="multipart")
    api.post(API + "prompts/", {"prompts": [{"prompt": "Three"}]}, format="json")
    labels = SimpleUploadedFile("ls.json", LABEL_STUDIO.read_bytes())
    api.post(API + "labels/import/", {"file": labels}, format="multipart")

    assert events("prompts.import") == [
        # the fixture's import, by the system
        (
            None,
            "feedback.project",
            project.pk,
            None,
            {"prompts": 4, "skipped": 0, "duplicates": "keep"},
        ),
        (
            "boss",
            "feedback.project",
            project.pk,
            None,
            {"prompts": 2, "skipped": 0, "duplicates": "error"},
        ),
        (
            "boss",
            "feedback.project",
            project.pk,
            None,
            {"prompts": 1, "skipped": 0, "duplicates": "error"},
        ),
    ]
    assert events("labels.import") == [
        (
            "boss",
            "feedback.project",
            project.pk,
            None,
            {"comparisons": 2, "labels": 3, "source": "label-studio"},
        )
    ]


def test_a_refused_import_records_nothing(project, admin_member, token_client):
    before = AuditEvent.objects.count()
    upload = SimpleUploadedFile("p.jsonl", b'{"prompt": "One"}\n{"nope": 1}\n')

    response = token_client(admin_member).post(
        API + "prompts/import/", {"file": upload}, format="multipart"
    )

    assert response.status_code == 400
    assert AuditEvent.objects.count() == before


def test_tokens_created_by_command_and_in_the_admin(admin_member, make_user, admin_client):
    call_command("drf_create_token", "boss")
    first = Token.objects.get(user=admin_member)
    call_command("drf_create_token", "boss")  # the same key: nothing created
    call_command("drf_create_token", "-r", "boss")
    second = Token.objects.get(user=admin_member)
    newcomer = make_user("newcomer")
    admin_client.post("/admin/authtoken/tokenproxy/add/", {"user": newcomer.pk})

    assert first.key != second.key
    assert events("token.create") == [
        (
            None,
            "auth.user",
            admin_member.pk,
            None,
            {"user": admin_member.pk, "token_created": stamp(first.created)},
        ),
        (
            None,
            "auth.user",
            admin_member.pk,
            {"user": admin_member.pk, "token_created": stamp(first.created)},
            {"user": admin_member.pk, "token_created": stamp(second.created)},
        ),
        (
            "admin",
            "auth.user",
            newcomer.pk,
            None,
            {
                "user": newcomer.pk,
                "token_created": stamp(Token.objects.get(user=newcomer).created),
            },
        ),
    ]
    logged = json.dumps(list(AuditEvent.objects.values("before", "after")))
    assert first.key not in logged and second.key not in logged
