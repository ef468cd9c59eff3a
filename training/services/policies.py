"""Policy versions: the base version, candidates, promotion and rollback."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from feedback.events import event_publish
from feedback.models import (
    AuditEvent,
    Project,
)
from feedback.services import audit_record
from training.models import (
    PolicyVersion,
    RewardModelVersion,
    SFTVersion,
    TrainingRun,
)
from training.selectors import next_number
from training.services.artifact_store import artifact_exists

# --- Policies -----------------------------------------------------------------------------


def policy_create_base(*, project: Project) -> PolicyVersion:
    """Version 0: the base model without an adapter, active from the start."""
    return PolicyVersion.objects.create(
        project=project, number=0, status=PolicyVersion.Status.ACTIVE, promoted_at=timezone.now()
    )


def policy_register(
    *,
    project: Project,
    parent: PolicyVersion,
    run: TrainingRun,
    reward_model: RewardModelVersion | None,
    adapter_path: str,
    metrics: dict[str, Any],
    adapter_manifest_sha256: str = "",
    sft: SFTVersion | None = None,
) -> PolicyVersion:
    """A trained adapter becomes a candidate version; `sft`: the SFT version at the root of
    its line, PPO's KL reference (None: the base model). The adapter must already be in the
    artifact store (`artifact_store` published it, with this manifest hash)."""
    if not artifact_exists(key=adapter_path, name="adapter_config.json"):
        raise ValidationError({"adapter_path": f"No adapter at {adapter_path}."})
    with transaction.atomic():
        return PolicyVersion.objects.create(
            project=project,
            number=next_number(PolicyVersion, project),
            parent=parent,
            adapter_path=adapter_path,
            adapter_manifest_sha256=adapter_manifest_sha256,
            status=PolicyVersion.Status.CANDIDATE,
            reward_model=reward_model,
            training_run=run,
            metrics=metrics,
            sft=sft,
        )


def _policy_activate(
    *,
    policy: PolicyVersion,
    versions: list[PolicyVersion],
    replaced: str,
    rollback: bool,
    actor: AbstractBaseUser | None,
) -> PolicyVersion:
    """Make `policy` active and give the version it replaces the status `replaced`; audited.

    Call inside a transaction holding the project's versions with SELECT FOR UPDATE.
    """
    was = next(v.status for v in versions if v.pk == policy.pk)
    previous = next((v for v in versions if v.status == PolicyVersion.Status.ACTIVE), None)
    if previous is not None:
        previous.status = replaced
        previous.save(update_fields=["status"])
    audit_record(
        actor=actor,
        project=policy.project,
        action=AuditEvent.Action.POLICY_ROLLBACK if rollback else AuditEvent.Action.POLICY_PROMOTE,
        target=policy,
        before={"active": previous.number if previous else None, "status": was},
        after={"active": policy.number, "replaced_status": replaced},
    )
    policy.status = PolicyVersion.Status.ACTIVE
    policy.promoted_at = timezone.now()
    policy.save(update_fields=["status", "promoted_at"])
    data = {"version": policy.number, "policy_id": policy.pk}
    event_publish(
        project_id=policy.project_id,
        event="policy_live",
        data={**data, "rollback": True} if rollback else data,
    )
    return policy


def policy_promote(
    *, policy: PolicyVersion, actor: AbstractBaseUser | None = None
) -> PolicyVersion:
    """Make `policy` the project's active version; the previous one retires. All or nothing."""
    with transaction.atomic():
        versions = list(
            PolicyVersion.objects.select_for_update().filter(project_id=policy.project_id)
        )
        if any(v.pk == policy.pk and v.status == PolicyVersion.Status.ACTIVE for v in versions):
            return policy
        return _policy_activate(
            policy=policy,
            versions=versions,
            replaced=PolicyVersion.Status.RETIRED,
            rollback=False,
            actor=actor,
        )


def policy_rollback(
    *, policy: PolicyVersion, actor: AbstractBaseUser | None = None
) -> PolicyVersion:
    """Make an earlier version active again; the one it replaces is marked rolled back.

    Nothing is deleted: every version, its adapter and its history stay.
    """
    with transaction.atomic():
        versions = list(
            PolicyVersion.objects.select_for_update().filter(project_id=policy.project_id)
        )
        target = next(v for v in versions if v.pk == policy.pk)
        if target.status == PolicyVersion.Status.ACTIVE:
            raise ValidationError({"policy": f"v{target.number} is already active."})
        if target.status not in (PolicyVersion.Status.RETIRED, PolicyVersion.Status.ROLLED_BACK):
            raise ValidationError(
                {
                    "policy": f"v{target.number} is {target.status}; only a version that was "
                    "active before can be rolled back to."
                }
            )
        return _policy_activate(
            policy=target,
            versions=versions,
            replaced=PolicyVersion.Status.ROLLED_BACK,
            rollback=True,
            actor=actor,
        )
