"""Assignment rules: k distinct annotators, lease limits and expiry, order, gold, repeats."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from feedback import labeling
from feedback.models import Assignment, Comparison, PreferenceLabel
from feedback.services import (
    REPEAT_GAP,
    assignment_next,
    assignment_skip,
    comparison_flag,
    comparison_set_gold,
    label_submit,
    membership_set,
)
from tests.factories import leases_expire, make_comparisons


@pytest.fixture
def people(project, make_user):
    users = [make_user(f"p{i}") for i in range(4)]
    for user in users:
        membership_set(project=project, user=user, role="annotator")
    return users


def expire(assignment: Assignment) -> None:
    leases_expire(Assignment.objects.filter(pk=assignment.pk))


def test_an_item_is_never_leased_to_more_annotators_than_it_still_needs(project, people):
    project.labels_per_comparison = 2
    project.save()
    (comparison,) = make_comparisons(project, [("x", "y")])

    first = assignment_next(project=project, user=people[0])
    label_submit(user=people[0], assignment_id=first.pk, choice="a")
    second = assignment_next(project=project, user=people[1])
    third = assignment_next(project=project, user=people[2])

    assert (first.comparison_id, second.comparison_id, third) == (
        comparison.pk,
        comparison.pk,
        None,
    )
    assert Assignment.objects.filter(status=Assignment.Status.ACTIVE).count() == 1


@pytest.mark.parametrize("give_back", ["skip", "flag"])
def test_a_lease_given_back_frees_its_place_at_once(give_back, project, people):
    project.labels_per_comparison = 2
    project.save()
    (comparison,) = make_comparisons(project, [("x", "y")])
    assignment_next(project=project, user=people[0])
    leaving = assignment_next(project=project, user=people[1])
    assert assignment_next(project=project, user=people[2]) is None  # full of leases

    if give_back == "skip":
        assignment_skip(user=people[1], assignment_id=leaving.pk, reason="unsure")
    else:
        comparison_flag(user=people[1], assignment_id=leaving.pk, reason="broken")

    assert assignment_next(project=project, user=people[2]).comparison_id == comparison.pk
    assert assignment_next(project=project, user=people[3]) is None


def test_an_annotator_never_gets_an_item_they_labelled(project, people):
    project.labels_per_comparison = 3
    project.save()
    make_comparisons(project, [("x", "y")])
    lease = assignment_next(project=project, user=people[0])
    label_submit(user=people[0], assignment_id=lease.pk, choice="a")

    assert assignment_next(project=project, user=people[0]) is None
    assert Assignment.objects.count() == 1


def test_an_expired_lease_frees_the_item_for_someone_else(project, people):
    (comparison,) = make_comparisons(project, [("x", "y")])
    stale = assignment_next(project=project, user=people[0])
    assert assignment_next(project=project, user=people[1]) is None
    expire(stale)

    fresh = assignment_next(project=project, user=people[1])

    assert fresh.comparison_id == comparison.pk
    assert fresh.annotator == people[1]
    assert fresh.expires_at > timezone.now() + timedelta(minutes=project.lease_minutes - 1)


def test_a_late_label_on_an_expired_lease_counts_once_and_closes_the_item(project, people):
    (comparison,) = make_comparisons(project, [("x", "y")])
    stale = assignment_next(project=project, user=people[0])
    expire(stale)
    fresh = assignment_next(project=project, user=people[1])

    late = label_submit(user=people[0], assignment_id=stale.pk, choice="b")
    with pytest.raises(ValidationError, match="no longer takes labels"):
        label_submit(user=people[1], assignment_id=fresh.pk, choice="a")

    comparison.refresh_from_db()
    assert (comparison.status, comparison.label_count) == (Comparison.Status.COMPLETE, 1)
    assert list(PreferenceLabel.objects.values_list("pk", "choice")) == [(late.pk, "b")]


def test_an_expired_lease_is_renewed_in_place_for_its_own_annotator(project, people):
    make_comparisons(project, [("x", "y")])
    lease = assignment_next(project=project, user=people[0])
    expire(lease)

    again = assignment_next(project=project, user=people[0])

    assert again.pk == lease.pk
    assert again.a_shown_left == lease.a_shown_left
    assert again.expires_at > timezone.now()
    assert Assignment.objects.count() == 1


def test_a_returning_annotator_gets_their_own_lease_before_anything_else(project, people):
    low, high = make_comparisons(project, [("low", "x"), ("high", "y")])
    Comparison.objects.filter(pk=high.pk).update(priority=5.0)
    lease = assignment_next(project=project, user=people[0])
    Comparison.objects.filter(pk=low.pk).update(priority=9.0)

    assert assignment_next(project=project, user=people[0]).pk == lease.pk
    assert lease.comparison_id == high.pk


def test_items_come_by_priority_then_oldest_first(project, people):
    old, new, urgent = make_comparisons(project, [("1", "a"), ("2", "b"), ("3", "c")])
    Comparison.objects.filter(pk=urgent.pk).update(priority=0.9)

    order = []
    for _ in range(3):
        lease = assignment_next(project=project, user=people[0])
        order.append(lease.comparison_id)
        label_submit(user=people[0], assignment_id=lease.pk, choice="a")

    assert order == [urgent.pk, old.pk, new.pk]


def test_gold_items_come_at_the_gold_rate_and_to_every_annotator(project, people, admin_member):
    regular, gold = make_comparisons(project, [("r", "s"), ("g", "h")])
    comparison_set_gold(admin=admin_member, comparison_id=gold.pk, choice="a")
    project.gold_rate = 1.0
    project.save()

    leases = [assignment_next(project=project, user=person) for person in people[:3]]
    for person, lease in zip(people[:3], leases, strict=True):
        label_submit(user=person, assignment_id=lease.pk, choice="a")

    assert [lease.comparison_id for lease in leases] == [gold.pk] * 3
    gold.refresh_from_db()
    assert (gold.status, gold.label_count) == (Comparison.Status.OPEN, 3)


def test_without_gold_rate_regular_items_come_first_and_gold_after(project, people, admin_member):
    gold, regular = make_comparisons(project, [("g", "h"), ("r", "s")])
    comparison_set_gold(admin=admin_member, comparison_id=gold.pk, choice="b")

    first = assignment_next(project=project, user=people[0])
    label_submit(user=people[0], assignment_id=first.pk, choice="a")
    second = assignment_next(project=project, user=people[0])

    assert (first.comparison_id, second.comparison_id) == (regular.pk, gold.pk)


def label_items(project, user, count: int) -> list[PreferenceLabel]:
    labels = []
    for _ in range(count):
        lease = assignment_next(project=project, user=user)
        labels.append(label_submit(user=user, assignment_id=lease.pk, choice="a", strength=2))
    return labels


def test_a_repeat_comes_back_later_with_sides_swapped_and_never_counts_towards_k(project, people):
    make_comparisons(project, [(f"a{i}", f"b{i}") for i in range(REPEAT_GAP + 2)])
    # The oldest label has REPEAT_GAP labels after it: it may come back now.
    first, *_ = label_items(project, people[0], REPEAT_GAP + 1)
    project.repeat_rate = 1.0
    project.save()

    repeat = assignment_next(project=project, user=people[0])
    label = label_submit(user=people[0], assignment_id=repeat.pk, choice="b", strength=1)

    assert (repeat.comparison_id, repeat.is_repeat) == (first.comparison_id, True)
    assert repeat.a_shown_left is (not first.a_shown_left)
    assert (label.is_repeat, label.a_shown_left) == (True, not first.a_shown_left)
    comparison = Comparison.objects.get(pk=first.comparison_id)
    assert (comparison.label_count, comparison.status) == (1, Comparison.Status.COMPLETE)
    # Only the oldest label had REPEAT_GAP labels after it, and it came back already.
    again = assignment_next(project=project, user=people[0])
    assert (again.is_repeat, again.comparison_id) == (False, comparison.pk + REPEAT_GAP + 1)


def test_no_repeat_before_the_gap(project, people):
    make_comparisons(project, [(f"a{i}", f"b{i}") for i in range(REPEAT_GAP + 1)])
    label_items(project, people[0], REPEAT_GAP)
    project.repeat_rate = 1.0
    project.save()

    lease = assignment_next(project=project, user=people[0])

    assert lease.is_repeat is False
    assert Assignment.objects.filter(is_repeat=True).count() == 0


def test_a_lease_marked_expired_takes_no_label_and_nothing_changes(project, people):
    (comparison,) = make_comparisons(project, [("x", "y")])
    lease = assignment_next(project=project, user=people[0])
    Assignment.objects.filter(pk=lease.pk).update(status=Assignment.Status.EXPIRED)

    with pytest.raises(ValidationError, match="This comparison was expired"):
        label_submit(user=people[0], assignment_id=lease.pk, choice="a")

    comparison.refresh_from_db()
    assert (comparison.label_count, comparison.status) == (0, Comparison.Status.OPEN)
    assert PreferenceLabel.objects.count() == 0


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the lease function: PostgreSQL")
@pytest.mark.parametrize(("own_transaction", "setting"), [(True, "off"), (False, "on")])
def test_a_lease_skips_waiting_for_the_disk_only_in_a_transaction_of_its_own(
    own_transaction, setting, project, people
):
    make_comparisons(project, [("x", "y")])
    call = labeling.lease_call(
        rules=labeling.ProjectRules.of(project),
        user_id=people[0].pk,
        now=timezone.now(),
        own_transaction=own_transaction,
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(*call)
        assert cursor.fetchone() is not None
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == setting
        transaction.set_rollback(True)
