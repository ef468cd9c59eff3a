"""Rows for tests: completions and comparisons without running a model."""

from __future__ import annotations

from feedback.models import Comparison, Completion, Project, Prompt
from feedback.services import comparisons_create
from training.selectors import policy_active


def make_comparisons(project: Project, texts: list[tuple[str, str]]) -> list[Comparison]:
    """One comparison per (a, b) pair of answer texts, on the project's train prompts."""
    policy = policy_active(project=project)
    prompts = list(Prompt.objects.filter(project=project, split="train").order_by("id"))
    pairs = []
    for i, (a, b) in enumerate(texts):
        prompt = prompts[i % len(prompts)]
        pairs.append(
            (
                Completion.objects.create(prompt=prompt, policy_version=policy, text=a),
                Completion.objects.create(prompt=prompt, policy_version=policy, text=b),
            )
        )
    return comparisons_create(project=project, pairs=pairs)
