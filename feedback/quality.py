"""Quality reads of a project: gold accuracy, self-consistency, position bias, agreement, and
the reviewer queue. Selectors: callers check that the user may see the project.

Standing labels only: a label its annotator withdrew (undo) counts nowhere here; the review
page still shows it, with its audit trail."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from feedback.agreement import (
    ORDINAL_SCALE,
    binomial_test_half,
    cohen_kappa,
    krippendorff_alpha,
    ordinal_value,
)
from feedback.models import Comparison, PreferenceLabel, Project

# Position bias is called out when the test rejects "left wins half the time" at this level.
BIAS_P_VALUE = 0.01


@dataclass(frozen=True)
class _Label:
    id: int
    comparison_id: int
    annotator_id: int
    choice: str
    strength: int
    a_shown_left: bool
    is_repeat: bool
    review_status: str
    kind: str
    gold_choice: str


def _labels(project: Project) -> list[_Label]:
    # The label of a person's own edit (Demonstration) is no judgement between two answers
    # shown: it would count as a left win in every figure.
    rows = (
        PreferenceLabel.objects.filter(comparison__project=project, withdrawn_at__isnull=True)
        .exclude(comparison__kind=Comparison.Kind.EDIT)
        .values_list(
            "id",
            "comparison_id",
            "annotator_id",
            "choice",
            "strength",
            "a_shown_left",
            "is_repeat",
            "review_status",
            "comparison__kind",
            "comparison__gold_choice",
        )
    )
    return [_Label(*row) for row in rows.order_by("id")]


def _alpha(labels: list[_Label]) -> float | None:
    units: dict[int, list[int]] = defaultdict(list)
    for label in labels:
        units[label.comparison_id].append(ordinal_value(label.choice, label.strength))
    return krippendorff_alpha(units.values(), metric="ordinal", scale=ORDINAL_SCALE)


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def project_quality(*, project: Project) -> dict[str, Any]:
    """Every quality figure of a project, per project and per annotator.

    Agreement uses each annotator's regular labels (not the repeats): Krippendorff's alpha
    on the 7-point ordinal scale (A strong .. tie/both-bad .. B strong) and Cohen's kappa on
    the choice (A, B, tie, both-bad) for every pair of annotators with a shared item.
    Per annotator, `alpha_without` is the project's alpha with that annotator left out: when
    it is clearly above the project's alpha, the annotator lowers agreement.
    """
    labels = _labels(project)
    regular = [label for label in labels if not label.is_repeat]
    names = dict(
        get_user_model()
        .objects.filter(pk__in={label.annotator_id for label in labels})
        .values_list("pk", "username")
    )

    # Pairwise kappa on shared items.
    by_comparison: dict[int, dict[int, str]] = defaultdict(dict)
    for label in regular:
        by_comparison[label.comparison_id][label.annotator_id] = label.choice
    shared: dict[tuple[int, int], list[tuple[str, str]]] = defaultdict(list)
    for choices in by_comparison.values():
        for x, y in combinations(sorted(choices), 2):
            shared[(x, y)].append((choices[x], choices[y]))
    pairs = [
        {
            "annotators": [names[x], names[y]],
            "shared_items": len(items),
            "kappa": _round(cohen_kappa(items)),
        }
        for (x, y), items in sorted(shared.items())
    ]

    originals = {(label.comparison_id, label.annotator_id): label for label in regular}
    annotators = []
    for annotator_id in sorted(names, key=lambda pk: names[pk]):
        mine = [label for label in regular if label.annotator_id == annotator_id]
        gold = [label for label in mine if label.kind == Comparison.Kind.GOLD and label.gold_choice]
        gold_correct = sum(1 for label in gold if label.choice == label.gold_choice)
        gold_accuracy = gold_correct / len(gold) if gold else None
        repeats = [
            (originals[(label.comparison_id, annotator_id)], label)
            for label in labels
            if label.is_repeat
            and label.annotator_id == annotator_id
            and (label.comparison_id, annotator_id) in originals
        ]
        consistent = sum(1 for first, again in repeats if first.choice == again.choice)
        decisive = [label for label in mine if label.choice in ("a", "b")]
        left_wins = sum(1 for label in decisive if (label.choice == "a") == label.a_shown_left)
        p_value = binomial_test_half(left_wins, len(decisive))
        kappas = [
            (len(items), cohen_kappa(items))
            for (x, y), items in shared.items()
            if annotator_id in (x, y)
        ]
        weighted = [(n, k) for n, k in kappas if k is not None]
        flags = []
        if (
            gold_accuracy is not None
            and len(gold) >= project.gold_min_labels
            and gold_accuracy < project.gold_accuracy_threshold
        ):
            flags.append(
                f"gold accuracy {gold_accuracy:.0%} is under {project.gold_accuracy_threshold:.0%}"
            )
        annotators.append(
            {
                "annotator_id": annotator_id,
                "username": names[annotator_id],
                "labels": len(mine),
                "rejected": sum(
                    1
                    for label in mine
                    if label.review_status == PreferenceLabel.ReviewStatus.REJECTED
                ),
                "gold": {
                    "labels": len(gold),
                    "correct": gold_correct,
                    "accuracy": _round(gold_accuracy),
                },
                "consistency": {
                    "repeats": len(repeats),
                    "consistent": consistent,
                    "rate": _round(consistent / len(repeats)) if repeats else None,
                },
                "position_bias": {
                    "decisive_labels": len(decisive),
                    "left_wins": left_wins,
                    "left_share": _round(left_wins / len(decisive)) if decisive else None,
                    "p_value": _round(p_value, 6),
                    "biased": bool(decisive) and p_value < BIAS_P_VALUE,
                },
                "kappa_mean": _round(
                    sum(n * k for n, k in weighted) / sum(n for n, _ in weighted)
                    if weighted
                    else None
                ),
                "alpha_without": _round(
                    _alpha([label for label in regular if label.annotator_id != annotator_id])
                ),
                "flagged": bool(flags),
                "flags": flags,
            }
        )

    defined = [(p["shared_items"], p["kappa"]) for p in pairs if p["kappa"] is not None]
    return {
        "project": project.slug,
        "labels": len(regular),
        "repeat_labels": len(labels) - len(regular),
        "comparisons_with_two_or_more_labels": sum(
            1 for choices in by_comparison.values() if len(choices) >= 2
        ),
        "alpha_ordinal": _round(_alpha(regular)),
        "kappa_mean": _round(
            sum(n * k for n, k in defined) / sum(n for n, _ in defined) if defined else None
        ),
        "gold_accuracy_threshold": project.gold_accuracy_threshold,
        "annotators": annotators,
        "pairs": pairs,
    }


def flagged_annotator_ids(*, quality: dict[str, Any]) -> list[int]:
    return [a["annotator_id"] for a in quality["annotators"] if a["flagged"]]


def _majority_choice(choices: list[str]) -> str | None:
    """The choice more than half of the labels agree on, or None."""
    if not choices:
        return None
    choice, n = Counter(choices).most_common(1)[0]
    return choice if n * 2 > len(choices) else None


def review_queue(*, project: Project) -> dict[str, Any]:
    """What a reviewer should look at, oldest first.

    - comparisons whose k labels are in but hold no majority (more than half agreeing on
      one choice), and that no reviewer has decided yet;
    - unreviewed labels of annotators flagged by their gold accuracy.
    Rejected and withdrawn labels do not vote; repeats never do.
    """
    quality = project_quality(project=project)
    counted = (
        PreferenceLabel.objects.filter(
            comparison__project=project, is_repeat=False, withdrawn_at__isnull=True
        )
        .exclude(review_status=PreferenceLabel.ReviewStatus.REJECTED)
        .values_list("comparison_id", "choice")
    )
    choices: dict[int, list[str]] = defaultdict(list)
    for comparison_id, choice in counted:
        choices[comparison_id].append(choice)
    undecided = (
        Comparison.objects.filter(project=project, final_choice="")
        .exclude(kind__in=[Comparison.Kind.GOLD, Comparison.Kind.EDIT])  # edits: demonstrations
        .filter(status=Comparison.Status.COMPLETE)
        .select_related("prompt")
        .order_by("created_at", "id")
    )
    no_majority = [
        c for c in undecided if len(choices[c.pk]) < 2 or _majority_choice(choices[c.pk]) is None
    ]
    flagged = flagged_annotator_ids(quality=quality)
    return {
        "no_majority": no_majority,
        "flagged_annotators": [a for a in quality["annotators"] if a["flagged"]],
        "flagged_labels": list(
            PreferenceLabel.objects.filter(
                comparison__project=project,
                annotator_id__in=flagged,
                review_status=PreferenceLabel.ReviewStatus.UNREVIEWED,
                withdrawn_at__isnull=True,
            )
            .select_related("annotator", "comparison__prompt")
            .order_by("created_at", "id")
        ),
        "quality": quality,
    }


def comparison_for_review(*, project: Project, comparison_id: int) -> Comparison:
    """A comparison of `project` with everything the review page shows; 404 otherwise."""
    from django.shortcuts import get_object_or_404

    return get_object_or_404(
        Comparison.objects.select_related("prompt", "completion_a", "completion_b", "final_by"),
        project=project,
        pk=comparison_id,
    )


def labels_for_review(*, comparison: Comparison) -> QuerySet[PreferenceLabel]:
    return (
        PreferenceLabel.objects.filter(comparison=comparison)
        .select_related("annotator")
        .prefetch_related("audits__actor")
        .order_by("is_repeat", "created_at", "id")
    )


def majority_choice(*, comparison: Comparison) -> str | None:
    counted = (
        PreferenceLabel.objects.filter(
            comparison=comparison, is_repeat=False, withdrawn_at__isnull=True
        )
        .exclude(review_status=PreferenceLabel.ReviewStatus.REJECTED)
        .values_list("choice", flat=True)
    )
    return _majority_choice(list(counted))
