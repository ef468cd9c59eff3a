"""The audit log: only ever added to (the database refuses an UPDATE or DELETE on
PostgreSQL), shown to the project's admins only (page and API), filterable, paginated."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from feedback.models import AuditEvent
from feedback.services import audit_record, membership_set

API = "/api/projects/demo/audit/"
PAGE = "/p/demo/audit/"


@pytest.fixture
def log(project, admin_member, annotator):
    """The project's log: the prompts import (system), two memberships (system), and 60
    schedule changes by the admin."""
    for minute in range(60):
        audit_record(
            actor=admin_member,
            project=project,
            action=AuditEvent.Action.SCHEDULE_SET,
            target=project,
            before={"cron": ""},
            after={"cron": f"{minute} 3 * * *"},
        )
    return project


postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the guard is a PostgreSQL trigger"
)


@postgresql_only
def test_the_database_refuses_to_update_an_audit_event(project):
    event = AuditEvent.objects.get(action="prompts.import")

    refused = pytest.raises(DatabaseError, match="audit events are append-only: UPDATE")
    with refused, transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(after={"prompts": 0})

    assert AuditEvent.objects.get(pk=event.pk).after == event.after


@postgresql_only
def test_the_database_refuses_to_delete_an_audit_event(project):
    event = AuditEvent.objects.get(action="prompts.import")

    refused = pytest.raises(DatabaseError, match="audit events are append-only: DELETE")
    with refused, transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()

    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_an_audited_project_or_person_is_never_deleted(project, admin_member):
    from django.db.models import ProtectedError

    membership_set(project=project, user=admin_member, role="reviewer", actor=admin_member)

    with pytest.raises(ProtectedError):
        admin_member.delete()
    with pytest.raises(ProtectedError):
        project.delete()

    assert AuditEvent.objects.filter(project=project).count() == 3


def test_only_admins_see_the_audit_log(log, admin_member, reviewer, annotator, client):
    from django.contrib.auth import get_user_model

    outsider = get_user_model().objects.create_user("outsider", password="pw")
    pages, answers = {}, {}
    for user in (admin_member, reviewer, annotator, outsider):
        client.force_login(user)
        pages[user.username] = client.get(PAGE).status_code
        answers[user.username] = client.get(API).status_code

    assert pages == {"boss": 200, "rev": 404, "ann": 404, "outsider": 404}
    assert answers == {"boss": 200, "rev": 403, "ann": 403, "outsider": 404}


def test_the_api_lists_newest_first_with_filters_and_pages(log, admin_member, client):
    client.force_login(admin_member)

    everything = client.get(API).json()
    oldest = client.get(API, {"page": 2}).json()["results"][-1]
    schedules = client.get(API, {"action": "loop.schedule", "page_size": 5}).json()
    by_boss = client.get(API, {"actor": "boss", "page": 2}).json()
    bad = client.get(API, {"action": "delete.everything"})

    assert everything["count"] == 63
    assert [e["action"] for e in everything["results"][:2]] == ["loop.schedule"] * 2
    assert everything["results"][0] == {
        "id": everything["results"][0]["id"],
        "at": everything["results"][0]["at"],
        "actor": "boss",
        "action": "loop.schedule",
        "target_type": "feedback.project",
        "target_id": log.pk,
        "before": {"cron": ""},
        "after": {"cron": "59 3 * * *"},
    }
    assert (oldest["action"], oldest["actor"]) == ("prompts.import", None)  # the system
    assert (schedules["count"], len(schedules["results"])) == (60, 5)
    assert (by_boss["count"], len(by_boss["results"])) == (60, 10)
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "action"


def test_the_page_filters_by_action_and_person_and_pages(log, admin_member, client):
    client.force_login(admin_member)

    first = client.get(PAGE)
    second = client.get(PAGE, {"page": 2})
    system_only = client.get(PAGE, {"action": "membership.set"})
    nobody = client.get(PAGE, {"actor": "ann"})
    bad = client.get(PAGE, {"action": "delete.everything"})

    assert first.content.count(b'data-action="loop.schedule"') == 50
    assert b"page 1 of 2 (63 entries)" in first.content
    assert second.content.count(b'data-action="') == 13
    assert system_only.content.count(b'data-action="membership.set"') == 2
    assert system_only.content.count(b"<em>system</em>") == 2
    assert b"No entry matches this filter." in nobody.content
    assert bad.status_code == 400


def test_the_loop_page_links_to_the_log_for_admins_only(log, admin_member, reviewer, client):
    client.force_login(admin_member)
    admin_page = client.get("/p/demo/")
    client.force_login(reviewer)
    reviewer_page = client.get("/p/demo/")

    assert b'id="audit-link"' in admin_page.content
    assert b'href="/p/demo/audit/"' in admin_page.content
    assert b'id="audit-link"' not in reviewer_page.content
