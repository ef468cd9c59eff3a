"""Projects, prompts, completions, comparisons, assignments and preference labels."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q


class Project(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    guidelines = models.TextField(blank=True, help_text="Markdown shown to annotators.")
    base_model = models.CharField(
        max_length=500, help_text="Local folder or hub id of a transformers causal LM."
    )
    # Generation settings of the active policy.
    max_new_tokens = models.PositiveIntegerField(default=96)
    temperature = models.FloatField(default=0.8, validators=[MinValueValidator(0.0)])
    top_p = models.FloatField(
        default=0.95, validators=[MinValueValidator(0.01), MaxValueValidator(1.0)]
    )
    # Labeling.
    labels_per_comparison = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(20)]
    )
    gold_rate = models.FloatField(
        default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    lease_minutes = models.PositiveIntegerField(default=30, validators=[MinValueValidator(1)])
    # The loop.
    trigger_new_labels = models.PositiveIntegerField(
        default=0, help_text="Start an iteration after this many new labels (0: off)."
    )
    comparisons_per_iteration = models.PositiveIntegerField(
        default=16, help_text="Prompts sampled into new comparisons after each iteration."
    )
    # Promotion gates: a candidate must pass every one against the active policy.
    auto_promote = models.BooleanField(
        default=True, help_text="Promote a candidate that passes the gates without approval."
    )
    gate_min_win_rate = models.FloatField(
        default=0.5,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Least reward-model win rate of the candidate against the active policy.",
    )
    gate_max_kl = models.FloatField(
        default=20.0,
        validators=[MinValueValidator(0.0)],
        help_text="Largest mean KL to the base model (nats per answer).",
    )
    gate_max_empty_rate = models.FloatField(
        default=0.1,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Largest share of empty answers.",
    )
    gate_max_repetition = models.FloatField(
        default=0.5,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Largest share of repeated 3-grams in the candidate's answers.",
    )
    training_config = models.JSONField(
        default=dict, blank=True, help_text="Overrides for reward and PPO settings."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        ANNOTATOR = "annotator"
        REVIEWER = "reviewer"
        ADMIN = "admin"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "project"], name="one_membership_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"


class Prompt(models.Model):
    class Split(models.TextChoices):
        TRAIN = "train"
        EVAL = "eval"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts")
    messages = models.JSONField(help_text='Chat turns: [{"role": ..., "content": ...}].')
    split = models.CharField(max_length=8, choices=Split.choices, default=Split.TRAIN)
    source = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["project", "split"])]

    def __str__(self) -> str:
        return self.text[:60]

    @property
    def text(self) -> str:
        """The last user turn, for lists and short displays."""
        users = [m["content"] for m in self.messages if m.get("role") == "user"]
        return users[-1] if users else ""


class Completion(models.Model):
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="completions")
    policy_version = models.ForeignKey(
        "training.PolicyVersion", on_delete=models.PROTECT, related_name="completions"
    )
    text = models.TextField()
    sampling = models.JSONField(default=dict, blank=True)
    token_count = models.PositiveIntegerField(default=0)
    finish_reason = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Completion {self.pk} of v{self.policy_version_id}"


class Comparison(models.Model):
    class Kind(models.TextChoices):
        REGULAR = "regular"
        GOLD = "gold"
        ARENA = "arena"

    class Status(models.TextChoices):
        OPEN = "open"
        COMPLETE = "complete"
        CLOSED = "closed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="comparisons")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="comparisons")
    completion_a = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="+")
    completion_b = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.REGULAR)
    required_labels = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    priority = models.FloatField(default=0.0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~Q(completion_a=models.F("completion_b")),
                name="comparison_of_two_completions",
            )
        ]
        indexes = [models.Index(fields=["project", "status", "-priority", "created_at"])]

    def __str__(self) -> str:
        return f"Comparison {self.pk}"


class Assignment(models.Model):
    """A lease of one comparison to one annotator, with the side shown left."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        SUBMITTED = "submitted"
        EXPIRED = "expired"

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments"
    )
    a_shown_left = models.BooleanField(help_text="Whether completion A was shown on the left.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["comparison", "annotator"], name="one_assignment_per_annotator"
            )
        ]
        indexes = [models.Index(fields=["annotator", "status"])]

    def __str__(self) -> str:
        return f"{self.annotator} on comparison {self.comparison_id} ({self.status})"


class PreferenceLabel(models.Model):
    class Choice(models.TextChoices):
        A = "a", "A is better"
        B = "b", "B is better"
        TIE = "tie", "Tie"
        BOTH_BAD = "both_bad", "Both bad"

    class Strength(models.IntegerChoices):
        SLIGHT = 1
        CLEAR = 2
        STRONG = 3

    class ReviewStatus(models.TextChoices):
        UNREVIEWED = "unreviewed"
        ACCEPTED = "accepted"
        REJECTED = "rejected"

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="labels")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="preference_labels"
    )
    assignment = models.OneToOneField(
        Assignment, on_delete=models.PROTECT, null=True, blank=True, related_name="label"
    )
    choice = models.CharField(max_length=8, choices=Choice.choices)
    strength = models.PositiveSmallIntegerField(choices=Strength.choices, default=Strength.CLEAR)
    rationale = models.TextField(blank=True)
    time_spent_ms = models.PositiveIntegerField(default=0)
    a_shown_left = models.BooleanField()
    review_status = models.CharField(
        max_length=10, choices=ReviewStatus.choices, default=ReviewStatus.UNREVIEWED
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["comparison", "annotator"], name="one_label_per_annotator"
            )
        ]
        indexes = [models.Index(fields=["comparison", "review_status"])]

    def __str__(self) -> str:
        return f"{self.annotator} on {self.comparison_id}: {self.choice}"


class LabelAudit(models.Model):
    """Every change to a label: who, when, before, after. Rows are only ever added."""

    label = models.ForeignKey(PreferenceLabel, on_delete=models.PROTECT, related_name="audits")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    action = models.CharField(max_length=32)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.action} label {self.label_id} by {self.actor}"
