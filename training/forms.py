"""Forms of the loop's pages."""

from __future__ import annotations

from django import forms

from feedback.models import PROJECT_GATE_FIELDS, Project


class ProjectGatesForm(forms.ModelForm):
    """The promotion gates of a project (feedback.services.project_gates_set saves them)."""

    class Meta:
        model = Project
        fields = list(PROJECT_GATE_FIELDS)
        labels = {
            "gate_min_win_rate": "Least reward-model win rate",
            "gate_max_kl": "Largest mean KL to the base",
            "gate_max_empty_rate": "Largest share of empty answers",
            "gate_max_repetition": "Largest share of repeated 3-grams",
            "gate_judge_min_win_rate": "Least win rate by the independent judge",
            "gate_max_overoptimization": "Largest gap between reward model and judge",
            "judge_min_pairs": "Pairs the judge needs",
            "gate_human_min_win_rate": "Human gate: least human win probability",
            "gate_human_labels": "Human gate: labels needed",
        }


class ProjectTrainingForm(forms.ModelForm):
    """How an iteration trains its candidate (feedback.services.project_training_set saves it)."""

    class Meta:
        model = Project
        fields = ["optimizer", "restart_from", "reward_length_control", "sft_min_demonstrations"]
        labels = {
            "optimizer": "Optimizer",
            "restart_from": "Each candidate starts from",
            "reward_length_control": "Reward models with length controlled",
            "sft_min_demonstrations": "SFT first after this many new accepted demonstrations",
        }
