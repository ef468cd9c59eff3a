"""Labels and audit rows cannot be added, changed or deleted in the admin: a label changes
only through the pages that audit each change, and audit rows never change."""

from __future__ import annotations

import pytest
from django.forms.models import model_to_dict

from feedback.models import LabelAudit, PreferenceLabel
from feedback.services import assignment_next, label_submit
from tests.factories import make_comparisons

LABELS = "/admin/feedback/preferencelabel/"


@pytest.fixture
def label(project, annotator):
    make_comparisons(project, [("x", "y")])
    assignment = assignment_next(project=project, user=annotator)
    return label_submit(
        user=annotator, assignment_id=assignment.pk, choice="a", rationale="A is kinder."
    )


def _rows(label: PreferenceLabel) -> tuple[dict, list[dict]]:
    label.refresh_from_db()
    audits = list(LabelAudit.objects.filter(label=label).order_by("id").values())
    return model_to_dict(label), audits


def test_a_post_to_a_label_change_page_changes_nothing(label, make_user, admin_client):
    other = make_user("other")
    before = _rows(label)
    audit_forms = len(before[1])
    form = {
        "comparison": label.comparison_id,
        "annotator": other.pk,
        "assignment": "",
        "choice": "b",
        "strength": 3,
        "rationale": "Edited in the admin.",
        "time_spent_ms": 1,
        "a_shown_left": "on",
        "review_status": "accepted",
        "withdrawn_at_0": "2026-01-01",
        "withdrawn_at_1": "00:00:00",
        "audits-TOTAL_FORMS": audit_forms,
        "audits-INITIAL_FORMS": audit_forms,
        "audits-MIN_NUM_FORMS": 0,
        "audits-MAX_NUM_FORMS": 1000,
        **{f"audits-{i}-id": row["id"] for i, row in enumerate(before[1])},
        **{f"audits-{i}-label": label.pk for i in range(audit_forms)},
        "_save": "Save",
    }

    page = admin_client.get(f"{LABELS}{label.pk}/change/")
    response = admin_client.post(f"{LABELS}{label.pk}/change/", form)

    assert _rows(label) == before
    assert response.status_code == 403
    assert page.status_code == 200  # shown, read-only
    assert b'name="rationale"' not in page.content
    assert b'name="annotator"' not in page.content


def test_labels_cannot_be_added_or_deleted_in_the_admin(label, project, admin_client):
    before = _rows(label)

    add = admin_client.post(f"{LABELS}add/", {"comparison": label.comparison_id, "choice": "a"})
    delete = admin_client.post(f"{LABELS}{label.pk}/delete/", {"post": "yes"})
    bulk = admin_client.post(
        LABELS, {"action": "delete_selected", "_selected_action": [label.pk], "post": "yes"}
    )

    assert (add.status_code, delete.status_code) == (403, 403)
    assert bulk.status_code in (200, 302)
    assert PreferenceLabel.objects.count() == 1
    assert _rows(label) == before


def test_audit_events_cannot_be_changed_or_deleted_in_the_admin(project, admin_client):
    from feedback.models import AuditEvent

    event = AuditEvent.objects.get(action="prompts.import")
    before = model_to_dict(event)
    url = f"/admin/feedback/auditevent/{event.pk}/"

    page = admin_client.get(url + "change/")
    change = admin_client.post(url + "change/", {"action": "policy.promote", "_save": "Save"})
    delete = admin_client.post(url + "delete/", {"post": "yes"})
    add = admin_client.post("/admin/feedback/auditevent/add/", {"action": "policy.promote"})

    event.refresh_from_db()
    assert page.status_code == 200
    assert b'name="after"' not in page.content
    assert (change.status_code, delete.status_code, add.status_code) == (403, 403, 403)
    assert model_to_dict(event) == before
    assert AuditEvent.objects.count() == 1
