"""Projects, their members and their prompts."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from feedback.models import (
    Membership,
    Project,
    Prompt,
    pseudonym_key_new,
)
from feedback.signals import project_created


def project_create(*, slug: str, name: str, base_model: str, **fields: Any) -> Project:
    """Create a project; the loop's receivers add what it needs (training: the version 0
    policy, the base model with no adapter) in the same transaction."""
    project = Project(slug=slug, name=name, base_model=base_model, **fields)
    project.full_clean()
    with transaction.atomic():
        project.save()
        project_created.send(sender=Project, project=project)
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
    for name, value in values.items():
        setattr(project, name, value)
    project.full_clean()
    project.save(update_fields=list(values))
    return project


def project_training_set(*, project: Project, optimizer: str, restart_from: str) -> Project:
    """Set how an iteration trains its candidate (PPO or DPO) and where it starts (the active
    version's adapter or the base model). An iteration reads them when its reward models are
    trained; one already training keeps its optimizer. Nothing is saved if a value is bad."""
    project.optimizer, project.restart_from = optimizer, restart_from
    project.full_clean()
    project.save(update_fields=["optimizer", "restart_from"])
    return project


def project_pseudonym_key_rotate(*, project: Project) -> Project:
    """A new random key for the project's pseudonyms. Exports name every annotator anew from
    now on (they cannot be joined with earlier exports), and a person an earlier import
    credited to a stand-in user gets a new stand-in in the next import."""
    project.pseudonym_key = pseudonym_key_new()
    project.save(update_fields=["pseudonym_key"])
    return project


def membership_set(*, project: Project, user: AbstractBaseUser, role: str) -> Membership:
    if role not in Membership.Role.values:
        raise ValidationError(
            {"role": f"Unknown role {role!r}; use one of {Membership.Role.values}."}
        )
    membership, _ = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    return membership


def prompts_import(
    *, project: Project, records: list[Any], source: str = "", duplicates: str = "keep"
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
    )
    return result.prompts
