"""The rows artifacts become: reward models, SFT versions and sampled completions. Where
artifacts are stored and how they are published: `artifact_store`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from feedback.models import (
    Comparison,
    Completion,
    Project,
    Prompt,
)
from feedback.services import comparisons_create, storable_text
from training.models import (
    DatasetSnapshot,
    DemonstrationSnapshot,
    PolicyVersion,
    RewardModelVersion,
    SFTVersion,
    TrainingRun,
)
from training.selectors import (
    next_number,
)
from training.services.artifact_store import artifact_exists

# --- Artifacts that become rows ------------------------------------------------------------


def reward_model_register(
    *,
    project: Project,
    run: TrainingRun,
    snapshot: DatasetSnapshot,
    adapter_path: str,
    metrics: dict[str, Any],
    role: str = RewardModelVersion.Role.POLICY,
    adapter_manifest_sha256: str = "",
) -> RewardModelVersion:
    """A trained reward adapter becomes a row. Call it after `artifact_store` published the
    adapter under `adapter_path` with this manifest hash."""
    with transaction.atomic():
        return RewardModelVersion.objects.create(
            project=project,
            number=next_number(RewardModelVersion, project),
            role=role,
            adapter_path=adapter_path,
            adapter_manifest_sha256=adapter_manifest_sha256,
            snapshot=snapshot,
            training_run=run,
            heldout_accuracy=metrics.get("heldout_accuracy"),
            metrics=metrics,
        )


def sft_register(
    *,
    project: Project,
    run: TrainingRun,
    snapshot: DemonstrationSnapshot,
    adapter_path: str,
    metrics: dict[str, Any],
    adapter_manifest_sha256: str = "",
) -> SFTVersion:
    """A trained SFT adapter becomes the project's next SFT version. The adapter must already
    be in the artifact store (`artifact_store` published it, with this manifest hash)."""
    if not artifact_exists(key=adapter_path, name="adapter_config.json"):
        raise ValidationError({"adapter_path": f"No adapter at {adapter_path}."})
    with transaction.atomic():
        return SFTVersion.objects.create(
            project=project,
            number=next_number(SFTVersion, project),
            adapter_path=adapter_path,
            adapter_manifest_sha256=adapter_manifest_sha256,
            snapshot=snapshot,
            training_run=run,
            heldout_loss=metrics.get("heldout_loss"),
            metrics=metrics,
        )


def generation_record(
    *,
    project: Project,
    rows: list[tuple[Prompt, list[tuple[PolicyVersion, dict[str, Any]]]]],
    sampling: dict[str, Any],
    priority: float | Sequence[float] = 0.0,
) -> list[Comparison]:
    """Store sampled answers as completions and pair each prompt's two into a comparison.

    `rows` holds, per prompt, two (policy version, sample) pairs: two samples of one policy,
    or one of the new policy and one of the previous. A sample's own "sampling" settings, when
    it has them, replace `sampling`. `priority`: one for every comparison, or one per row.
    Pairs whose two answers are identical teach nothing and are left out.
    """
    priorities = [priority] * len(rows) if isinstance(priority, (int, float)) else priority
    with transaction.atomic():
        pairs: list[tuple[Completion, Completion]] = []
        kept: list[float] = []
        for (prompt, samples), value in zip(rows, priorities, strict=True):
            completions = Completion.objects.bulk_create(
                [
                    Completion(
                        prompt=prompt,
                        policy_version=policy,
                        text=storable_text(sample["text"]),
                        sampling=sample.get("sampling", sampling),
                        token_count=sample["token_count"],
                        finish_reason=sample["finish_reason"],
                    )
                    for policy, sample in samples
                ]
            )
            if len(completions) >= 2 and completions[0].text != completions[1].text:
                pairs.append((completions[0], completions[1]))
                kept.append(value)
        return comparisons_create(project=project, pairs=pairs, priority=kept)
