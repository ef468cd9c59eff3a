"""Dataset snapshots: the preference data a reward model (or DPO) is trained on, and the
demonstrations SFT is trained on, each frozen as a file with its hash."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from feedback.exports import demonstration_record
from feedback.models import (
    Comparison,
    Demonstration,
    PreferenceLabel,
    Project,
    Prompt,
    TieHandling,
)
from training.models import (
    DatasetSnapshot,
    DemonstrationSnapshot,
)
from training.selectors import demonstrations_for_sft, labels_for_training, sft_latest
from training.services.artifact_store import (
    StoredArtifact,
    artifact_delete,
    artifact_store,
    artifact_work_dir,
)

# --- Dataset snapshots ------------------------------------------------------------------


def _majority(labels: list[PreferenceLabel], *, tie_handling: str) -> tuple[str, float] | None:
    """Strength-weighted vote between A and B: (winner, margin) or None for no preference.

    Each A label adds its strength (1 slight .. 3 strong) to A's side, each B label to B's.
    The margin is the winner's weighted lead per voting label, on the strength scale. Tie and
    both-bad labels follow the project's `tie_handling`: "abstain" leaves them out of the
    vote; "count" makes them votes for no preference, which dilute the margin and, when they
    are at least half of the labels, leave the comparison without a preference.
    """
    score = 0
    decisive = 0
    for label in labels:
        if label.choice == PreferenceLabel.Choice.A:
            score += label.strength
            decisive += 1
        elif label.choice == PreferenceLabel.Choice.B:
            score -= label.strength
            decisive += 1
    if score == 0:
        return None
    voters = decisive
    if tie_handling == TieHandling.COUNT:
        if 2 * (len(labels) - decisive) >= len(labels):
            return None
        voters = len(labels)
    return ("a" if score > 0 else "b"), abs(score) / voters


def _override(comparison: Comparison, labels: list[PreferenceLabel]) -> tuple[str, float] | None:
    """The reviewer's final preference, else a gold item's known answer, as (winner, margin);
    margin: the mean strength of the labels that agree with it (1, slight, when none does).
    ("", 0) when the decision is tie or both-bad: no pair. None when nothing overrides."""
    decided = comparison.final_choice or comparison.gold_choice
    if not decided:
        return None
    if decided not in (PreferenceLabel.Choice.A, PreferenceLabel.Choice.B):
        return "", 0.0
    agreeing = [label.strength for label in labels if label.choice == decided]
    return decided, (sum(agreeing) / len(agreeing) if agreeing else 1.0)


@dataclass(frozen=True)
class ComparisonVerdict:
    """One comparison's verdict: the answer people preferred, and by how much."""

    comparison: Comparison
    labels: list[PreferenceLabel]
    winner: str  # "a" or "b"
    margin: float
    overridden: bool  # decided by a reviewer's final preference or a gold answer

    @property
    def chosen(self) -> str:
        a, b = self.comparison.completion_a.text, self.comparison.completion_b.text
        return a if self.winner == "a" else b

    @property
    def rejected(self) -> str:
        a, b = self.comparison.completion_a.text, self.comparison.completion_b.text
        return b if self.winner == "a" else a


def comparison_verdicts(
    *, project: Project, split: str | None = None
) -> tuple[list[ComparisonVerdict], int]:
    """One pair per comparison with a preference, and the count of those without one.

    A reviewer's final preference (or a gold item's answer) overrides the strength-weighted
    majority vote of its labels; rejected labels and consistency repeats are left out
    (labels_for_training); ties and both-bad follow the project's setting. With `split`, only
    comparisons on prompts of that split. Shared by snapshots (training) and exports
    (training/exports.py), so both agree on every pair.
    """
    by_comparison: dict[int, list[PreferenceLabel]] = defaultdict(list)
    for label in labels_for_training(project=project):
        by_comparison[label.comparison_id].append(label)
    decided = (
        Comparison.objects.filter(project=project)
        .exclude(final_choice="", gold_choice="")
        .exclude(pk__in=list(by_comparison))
        .select_related("prompt", "completion_a", "completion_b")
    )
    comparisons = {
        label.comparison_id: label.comparison
        for labels in by_comparison.values()
        for label in labels
    }
    comparisons.update({c.pk: c for c in decided})
    if split is not None:
        comparisons = {k: c for k, c in comparisons.items() if c.prompt.split == split}

    pairs: list[ComparisonVerdict] = []
    no_preference = 0
    for comparison_id in sorted(comparisons):
        comparison = comparisons[comparison_id]
        labels = by_comparison.get(comparison_id, [])
        vote = _override(comparison, labels)
        overridden = vote is not None
        if vote is None:
            vote = _majority(labels, tie_handling=project.tie_handling)
        if vote is None or not vote[0]:
            no_preference += 1
            continue
        pairs.append(
            ComparisonVerdict(
                comparison=comparison,
                labels=labels,
                winner=vote[0],
                margin=vote[1],
                overridden=overridden,
            )
        )
    return pairs, no_preference


def snapshot_create(*, project: Project, name: str) -> DatasetSnapshot:
    """Write the preference data of the policy's reward model as TRL explicit-prompt JSONL and
    record it.

    Only comparisons on train prompts: the eval prompts judge candidates (the independent
    judge's labels, the versus comparisons of the human gate), so this reward model never
    sees them.
    """
    pairs, no_preference = comparison_verdicts(project=project, split=Prompt.Split.TRAIN)
    if not pairs:
        raise ValidationError(
            f"Project {project.slug} has no comparison with a preference on its train prompts "
            f"yet ({no_preference} without one): label some comparisons first."
        )
    return _snapshot_write(project, name, pairs, no_preference, Prompt.Split.TRAIN)


def judge_snapshot_create(*, project: Project, name: str) -> DatasetSnapshot | None:
    """The independent judge's data: comparisons on eval prompts only, which no policy reward
    model sees (the split is fixed per prompt, so the two stay disjoint across iterations).
    None while there are fewer pairs than the project's judge_min_pairs."""
    pairs, no_preference = comparison_verdicts(project=project, split=Prompt.Split.EVAL)
    if len(pairs) < project.judge_min_pairs:
        return None
    return _snapshot_write(project, name, pairs, no_preference, Prompt.Split.EVAL)


def _snapshot_write(
    project: Project,
    name: str,
    pairs: list[ComparisonVerdict],
    no_preference: int,
    split: str,
) -> DatasetSnapshot:
    rows: list[dict[str, Any]] = [
        {
            "prompt": pair.comparison.prompt.messages,
            "chosen": [{"role": "assistant", "content": pair.chosen}],
            "rejected": [{"role": "assistant", "content": pair.rejected}],
            "margin": pair.margin,
        }
        for pair in pairs
    ]
    used: list[int] = [label.pk for pair in pairs for label in pair.labels]
    counts = {
        "pairs": len(rows),
        "labels": len(used),
        "comparisons_without_preference": no_preference,
        "decided_by_reviewer_or_gold": sum(pair.overridden for pair in pairs),
        "tie_handling": project.tie_handling,
        "split": split,
    }
    payload, stored = _jsonl_store(project, name, rows)
    try:
        with transaction.atomic():
            return DatasetSnapshot.objects.create(
                project=project,
                path=stored.key,
                manifest_sha256=stored.manifest_sha256,
                sha256=hashlib.sha256(payload).hexdigest(),
                pair_count=len(rows),
                label_ids=used,
                counts=counts,
            )
    except Exception:
        artifact_delete(artifact=stored)
        raise


def demonstration_snapshot_create(*, project: Project, name: str) -> DemonstrationSnapshot:
    """Write the demonstrations SFT trains on (demonstrations_for_sft: accepted, on train
    prompts) as TRL SFT JSONL, `messages` style (feedback/exports.py's records), and record
    exactly which ones, with the text each had then. `counts["new"]`: how many the latest SFT
    version had not seen."""
    demonstrations: list[Demonstration] = list(demonstrations_for_sft(project=project))
    if not demonstrations:
        raise ValidationError(
            f"Project {project.slug} has no accepted demonstration on its train prompts: "
            "review some first."
        )
    previous = sft_latest(project=project)
    seen = set(previous.snapshot.demonstration_ids) if previous is not None else set()
    rows = [demonstration_record(d, style="messages") for d in demonstrations]
    counts = {
        "demonstrations": len(rows),
        "prompts": len({d.prompt_id for d in demonstrations}),
        "new": sum(d.pk not in seen for d in demonstrations),
        "previous_sft": previous.number if previous is not None else None,
        "by_origin": dict(sorted(Counter(d.origin for d in demonstrations).items())),
        "corrected": sum(
            d.review_status == Demonstration.ReviewStatus.CORRECTED for d in demonstrations
        ),
        "split": Prompt.Split.TRAIN,
        "style": "messages",
    }
    payload, stored = _jsonl_store(project, name, rows)
    try:
        with transaction.atomic():
            return DemonstrationSnapshot.objects.create(
                project=project,
                path=stored.key,
                manifest_sha256=stored.manifest_sha256,
                sha256=hashlib.sha256(payload).hexdigest(),
                demonstration_count=len(rows),
                demonstration_ids=[d.pk for d in demonstrations],
                counts=counts,
            )
    except Exception:
        artifact_delete(artifact=stored)
        raise


def _jsonl_store(
    project: Project, name: str, rows: list[dict[str, Any]]
) -> tuple[bytes, StoredArtifact]:
    """Publish `rows` as the JSONL file `projects/<id>/snapshots/<name>.jsonl`: (its bytes,
    the stored artifact). The file is published before its row (an upload that fails leaves
    no row); the caller takes it away again when the row cannot be written."""
    payload = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
    work = artifact_work_dir(project_id=project.pk)
    try:
        (work / "snapshot.jsonl").write_bytes(payload)
        stored = artifact_store(
            source=work / "snapshot.jsonl", key=f"projects/{project.pk}/snapshots/{name}.jsonl"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return payload, stored
