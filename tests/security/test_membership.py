"""A member removed from a project (or a deactivated user) labels nothing more in it.

The labeling statements check membership themselves (feedback/labeling/), on both paths:
Django's services and the fast path in front of it (api/fastpath.py), whose caches remember who
is calling but not what they may do. Ending a membership (feedback.services.membership_remove, the
admin) or deactivating a user also closes their active leases.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.admin.sites import site
from django.core.exceptions import ValidationError
from django.forms.models import model_to_dict
from django.test import Client

from feedback import services
from feedback.models import Assignment, Comparison, Membership, PreferenceLabel, Project
from feedback.services import (
    assignment_next,
    label_submit,
    membership_set,
    project_create,
    prompts_import,
)
from tests.api.test_fastpath import NEXT, Caller, as_json, label_url, run
from tests.factories import leases_expire, make_comparisons

pytestmark = pytest.mark.django_db(transaction=True)
ON_POSTGRESQL = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
PATHS = ["django", "fast"] if ON_POSTGRESQL else ["django"]
NOT_ASSIGNED = {
    "errors": [{"field": "assignment", "message": "This comparison is not assigned to you."}]
}


def _remove(user, project) -> None:
    """The membership row goes, and nothing else: what the statements check on their own."""
    Membership.objects.filter(user=user, project=project).delete()


def _nothing_stored(lease_pk: int, comparison: Comparison) -> None:
    comparison.refresh_from_db()
    assert PreferenceLabel.objects.count() == 0
    assert Assignment.objects.get(pk=lease_pk).status == Assignment.Status.ACTIVE
    assert (comparison.label_count, comparison.status) == (0, Comparison.Status.OPEN)


@pytest.mark.parametrize("expired", [False, True], ids=["held", "expired"])
@pytest.mark.parametrize("path", PATHS)
def test_a_removed_member_submits_no_label(path, expired, project, annotator):
    (comparison,) = make_comparisons(project, [("x", "y")])
    caller = Caller(None, user=annotator)
    leased = {}

    async def lease(app):  # the fast path now holds the caller and their project in its caches
        caller.app = app
        leased.update(as_json((await caller.post(NEXT))[2]))

    def scenario(app):
        async def steps():
            await lease(app)
            await _sync(lambda: _remove(annotator, project))
            if expired:
                await _sync(leases_expire)
            return await caller.post(label_url(leased["assignment_id"]), {"choice": "a"})

        return steps()

    (status, _, body), served = run(path, scenario)

    assert (status, as_json(body)) == (400, NOT_ASSIGNED)
    assert served == ({} if path == "django" else {"next": 1, "django": 1})
    _nothing_stored(leased["assignment_id"], comparison)


@pytest.mark.parametrize("expired", [False, True], ids=["held", "expired"])
def test_the_label_service_refuses_a_removed_member(expired, project, annotator):
    (comparison,) = make_comparisons(project, [("x", "y")])
    lease = assignment_next(project=project, user=annotator)
    _remove(annotator, project)
    if expired:
        leases_expire()

    with pytest.raises(ValidationError, match="This comparison is not assigned to you."):
        label_submit(user=annotator, assignment_id=lease.pk, choice="a")

    _nothing_stored(lease.pk, comparison)


def test_a_deactivated_user_submits_no_label(project, annotator):
    (comparison,) = make_comparisons(project, [("x", "y")])
    lease = assignment_next(project=project, user=annotator)
    type(annotator).objects.filter(pk=annotator.pk).update(is_active=False)  # no save(): no hook

    with pytest.raises(ValidationError, match="This comparison is not assigned to you."):
        label_submit(user=annotator, assignment_id=lease.pk, choice="a")

    _nothing_stored(lease.pk, comparison)


@pytest.mark.skipif(not ON_POSTGRESQL, reason="the fast path serves PostgreSQL only")
def test_the_fast_path_stops_leasing_at_once_when_the_membership_goes(project, annotator):
    make_comparisons(project, [("x", "y"), ("z", "w")])
    caller = Caller(None, user=annotator)

    def scenario(app):
        async def steps():
            caller.app = app
            first = await caller.post(NEXT)
            label = await caller.post(
                label_url(as_json(first[2])["assignment_id"]), {"choice": "a"}
            )
            await _sync(lambda: _remove(annotator, project))
            return first[0], label[0], await caller.post(NEXT)

        return steps()

    (first, label, (status, _, body)), served = run("fast", scenario)

    assert (first, label) == (200, 201)
    assert (status, as_json(body)) == (
        404,
        {"errors": [{"field": "detail", "message": "No such project."}]},
    )
    assert Assignment.objects.count() == 1  # no lease after the removal
    assert served == {"next": 1, "label": 1, "django": 1}


def test_a_lease_of_a_project_left_is_refused_through_another_projects_page(
    client, project, annotator
):
    other = project_create(slug="b", name="B", base_model="unused")
    prompts_import(project=other, records=[{"prompt": "Hi."}], source="test")
    membership_set(project=other, user=annotator, role="annotator")
    (comparison,) = make_comparisons(other, [("x", "y")])
    lease = assignment_next(project=other, user=annotator)
    _remove(annotator, other)
    client.force_login(annotator)

    response = client.post(
        "/p/demo/label/submit/", {"assignment_id": lease.pk, "choice": "a", "strength": 2}
    )

    assert response.status_code == 400  # a refused label: 400 with the page (bad-input rules)
    assert "This comparison is not assigned to you." in response.content.decode()
    _nothing_stored(lease.pk, comparison)


def _lease_and_other_place(project, annotator, make_user):
    """A comparison that takes one label, leased to `annotator`, and a second annotator who
    finds it full."""
    project.labels_per_comparison = 1
    project.save()
    (comparison,) = make_comparisons(project, [("x", "y")])
    lease = assignment_next(project=project, user=annotator)
    waiting = make_user("waiting")
    membership_set(project=project, user=waiting, role="annotator")
    assert assignment_next(project=project, user=waiting) is None  # full of leases
    return comparison, lease, waiting


def _closed_and_freed(lease, comparison, waiting, project):
    lease.refresh_from_db()
    comparison.refresh_from_db()
    assert lease.status == Assignment.Status.EXPIRED
    assert comparison.leases_full_until is None
    again = assignment_next(project=project, user=waiting)
    assert again.comparison_id == comparison.pk  # the place went to someone else


def test_membership_remove_closes_the_members_leases(project, annotator, make_user):
    comparison, lease, waiting = _lease_and_other_place(project, annotator, make_user)
    membership = Membership.objects.get(user=annotator, project=project)

    services.membership_remove(project=membership.project, user=membership.user)

    assert not Membership.objects.filter(user=annotator, project=project).exists()
    _closed_and_freed(lease, comparison, waiting, project)
    with pytest.raises(ValidationError, match="This comparison is not assigned to you."):
        label_submit(user=annotator, assignment_id=lease.pk, choice="a")
    membership_set(project=project, user=annotator, role="annotator")  # back again
    with pytest.raises(ValidationError, match="This comparison was expired"):
        label_submit(user=annotator, assignment_id=lease.pk, choice="a")


def test_deactivating_a_user_closes_their_leases(project, annotator, make_user):
    comparison, lease, waiting = _lease_and_other_place(project, annotator, make_user)

    annotator.is_active = False
    annotator.save()

    _closed_and_freed(lease, comparison, waiting, project)
    assert Membership.objects.filter(user=annotator, project=project).exists()


def test_removing_a_member_in_the_admin_closes_their_leases(project, annotator, make_user):
    comparison, lease, waiting = _lease_and_other_place(project, annotator, make_user)
    root = make_user("root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(root)

    response = client.post(f"/admin/feedback/project/{project.pk}/change/", _admin_form(project))

    assert response.status_code == 302, response.content.decode()[:2000]
    assert list(Membership.objects.filter(project=project).values_list("user__username")) == [
        ("waiting",)
    ]
    _closed_and_freed(lease, comparison, waiting, project)


def _admin_form(project: Project) -> dict:
    """The project's admin form as it is, with the annotator's membership marked deleted."""
    import json

    form = site._registry[Project].get_form(None, project)
    data = {}
    for name, value in model_to_dict(project, fields=form.base_fields).items():
        if value is None:
            continue
        data[name] = json.dumps(value) if isinstance(value, dict | list) else value
    memberships = list(Membership.objects.filter(project=project).order_by("pk"))
    prefix = "memberships"
    data.update(
        {
            f"{prefix}-TOTAL_FORMS": len(memberships),
            f"{prefix}-INITIAL_FORMS": len(memberships),
            f"{prefix}-MIN_NUM_FORMS": 0,
            f"{prefix}-MAX_NUM_FORMS": 1000,
        }
    )
    for i, membership in enumerate(memberships):
        data[f"{prefix}-{i}-id"] = membership.pk
        data[f"{prefix}-{i}-project"] = project.pk
        data[f"{prefix}-{i}-user"] = membership.user_id
        data[f"{prefix}-{i}-role"] = membership.role
        if membership.user.username == "ann":
            data[f"{prefix}-{i}-DELETE"] = "on"
    return {k: v for k, v in data.items() if v is not False}


async def _sync(function):
    from asgiref.sync import sync_to_async

    return await sync_to_async(function)()
