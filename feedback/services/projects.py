"""Projects, their members and their prompts."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from feedback.events import user_sockets_close
from feedback.models import (
    PROJECT_SETTINGS,
    AuditEvent,
    Membership,
    Project,
    Prompt,
    pseudonym_key_new,
)
from feedback.services.audit import audit_record
from feedback.services.labels import user_leases_close
from feedback.signals import project_created

# Each group of settings that changed is one audit event; groups without their own action
# share "project.settings".
GROUP_ACTIONS = {
    "Promotion gates": AuditEvent.Action.GATES_SET,
    "Training": AuditEvent.Action.TRAINING_CONFIG_SET,
}


def project_create(*, slug: str, name: str, base_model: str, **fields: Any) -> Project:
    """Create a project; the loop's receivers add what it needs (training: the version 0
    policy, the base model with no adapter) in the same transaction."""
    project = Project(slug=slug, name=name, base_model=base_model, **fields)
    project.full_clean()
    with transaction.atomic():
        project.save()
        project_created.send(sender=Project, project=project)
    return project


def project_settings_set(
    *, project: Project, values: dict[str, Any], actor: AbstractBaseUser | None = None
) -> Project:
    """Change some of a project's settings (PROJECT_SETTINGS), all or none, with one audit
    event per group that changed: what each changed setting was and what it is now."""
    groups = {name: group for group, names in PROJECT_SETTINGS.items() for name in names}
    unknown = sorted(set(values) - set(groups))
    if unknown:
        raise ValidationError({name: "Not a project setting." for name in unknown})
    with transaction.atomic():
        stored = Project.objects.select_for_update().get(pk=project.pk)
        changed = [name for name, value in values.items() if getattr(stored, name) != value]
        for name in changed:
            setattr(project, name, values[name])
        project.full_clean()
        if not changed:
            return project
        project.save(update_fields=changed)
        events: dict[str, list[str]] = {}
        for name in changed:
            action = GROUP_ACTIONS.get(groups[name], AuditEvent.Action.SETTINGS_SET)
            events.setdefault(action, []).append(name)
        for action, names in events.items():
            audit_record(
                actor=actor,
                project=project,
                action=action,
                target=project,
                before={name: getattr(stored, name) for name in names},
                after={name: getattr(project, name) for name in names},
            )
    return project


def project_gates_set(
    *,
    project: Project,
    auto_promote: bool,
    gate_min_win_rate: float,
    gate_max_kl: float,
    gate_max_empty_rate: float,
    gate_max_repetition: float,
    gate_judge_min_win_rate: float | None,
    gate_max_overoptimization: float,
    judge_min_pairs: int,
    gate_human_min_win_rate: float | None,
    gate_human_labels: int,
    actor: AbstractBaseUser | None = None,
) -> Project:
    """Set what a candidate must show before promotion (training/gates.py). A candidate that
    already waits for humans is judged by the settings at each check."""
    values = {
        "auto_promote": auto_promote,
        "gate_min_win_rate": gate_min_win_rate,
        "gate_max_kl": gate_max_kl,
        "gate_max_empty_rate": gate_max_empty_rate,
        "gate_max_repetition": gate_max_repetition,
        "gate_judge_min_win_rate": gate_judge_min_win_rate,
        "gate_max_overoptimization": gate_max_overoptimization,
        "judge_min_pairs": judge_min_pairs,
        "gate_human_min_win_rate": gate_human_min_win_rate,
        "gate_human_labels": gate_human_labels,
    }
    return project_settings_set(project=project, values=values, actor=actor)


def project_training_set(
    *,
    project: Project,
    optimizer: str,
    restart_from: str,
    reward_length_control: bool,
    sft_min_demonstrations: int | None,
    actor: AbstractBaseUser | None = None,
) -> Project:
    """Set how an iteration trains its candidate (PPO or DPO), where it starts (the active
    version's adapter or the base model), whether its reward models are trained with length
    controlled, and when it first runs SFT (None: never). An iteration reads the SFT threshold
    when it starts and the others when its reward models are trained; one already training
    keeps its settings. Nothing is saved if a value is bad."""
    values = {
        "optimizer": optimizer,
        "restart_from": restart_from,
        "reward_length_control": reward_length_control,
        "sft_min_demonstrations": sft_min_demonstrations,
    }
    return project_settings_set(project=project, values=values, actor=actor)


def project_pseudonym_key_rotate(*, project: Project) -> Project:
    """A new random key for the project's pseudonyms. Exports name every annotator anew from
    now on (they cannot be joined with earlier exports), and a person an earlier import
    credited to a stand-in user gets a new stand-in in the next import."""
    project.pseudonym_key = pseudonym_key_new()
    project.save(update_fields=["pseudonym_key"])
    return project


def membership_set(
    *, project: Project, user: AbstractBaseUser, role: str, actor: AbstractBaseUser | None = None
) -> Membership:
    """Add `user` to the project with `role`, or change their role. A changed role closes
    their open sockets of the project: they connect again into the new role's events."""
    if role not in Membership.Role.values:
        raise ValidationError(
            {"role": f"Unknown role {role!r}; use one of {Membership.Role.values}."}
        )
    with transaction.atomic():
        previous = (
            Membership.objects.select_for_update()
            .filter(project=project, user=user)
            .values_list("role", flat=True)
            .first()
        )
        membership, _ = Membership.objects.update_or_create(
            project=project, user=user, defaults={"role": role}
        )
        if previous != role:
            audit_record(
                actor=actor,
                project=project,
                action=AuditEvent.Action.MEMBERSHIP_SET,
                target=user,
                before={"user": user.pk, "role": previous} if previous else None,
                after={"user": user.pk, "role": role},
            )
        if previous is not None and previous != role:
            user_sockets_close(user_id=user.pk, project_id=project.pk)
    return membership


def membership_remove(
    *, project: Project, user: AbstractBaseUser, actor: AbstractBaseUser | None = None
) -> None:
    """Take `user` out of the project, and everything the membership let them hold: their
    active leases in it close (feedback.services.user_leases_close) and their open sockets of
    it close. Their labels stay and keep counting. Every removal of a membership goes through
    here (the admin too); the labeling statements refuse a non-member's label in any case."""
    with transaction.atomic():
        membership = Membership.objects.select_for_update().filter(project=project, user=user)
        role = membership.values_list("role", flat=True).first()
        if role is None:
            raise ValidationError({"user": "Not a member of this project."})
        user_leases_close(user_id=user.pk, project_id=project.pk)
        membership.delete()
        audit_record(
            actor=actor,
            project=project,
            action=AuditEvent.Action.MEMBERSHIP_REMOVE,
            target=user,
            before={"user": user.pk, "role": role},
            after=None,
        )
        user_sockets_close(user_id=user.pk, project_id=project.pk)


def user_access_end(*, user: AbstractBaseUser) -> None:
    """A deactivated user holds nothing: their active leases close in every project, and
    their open sockets close. Memberships stay (a reactivated user finds them again).
    Called on every save of an inactive user (feedback/apps.py): Django's admin, a shell or a
    script deactivates users, not a service of Hone."""
    with transaction.atomic():
        user_leases_close(user_id=user.pk)
        user_sockets_close(user_id=user.pk)


def prompts_import(
    *,
    project: Project,
    records: list[Any],
    source: str = "",
    duplicates: str = "keep",
    actor: AbstractBaseUser | None = None,
) -> list[Prompt]:
    """Validate every record first, then write all of them or none.

    Records are {"prompt": text or chat turns, "split", "metadata"}; files (JSONL, CSV, JSON)
    go through feedback.imports.prompts_import_file, which also reports duplicates.
    """
    from feedback.imports import prompts_import_records

    result = prompts_import_records(
        project=project,
        records=list(enumerate(records, start=1)),
        source=source,
        duplicates=duplicates,
        actor=actor,
    )
    return result.prompts
