"""Policy versions, SFT versions, reward models, dataset snapshots, loop iterations and training
runs."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class DatasetSnapshot(models.Model):
    """The preference data one iteration trained on: a JSONL file and exactly which labels."""

    project = models.ForeignKey("feedback.Project", on_delete=models.CASCADE)
    path = models.CharField(max_length=500, help_text="Relative to the artifact root.")
    manifest_sha256 = models.CharField(
        max_length=64,
        blank=True,
        help_text="sha256 of the artifact's manifest (each file's sha256): what readers check "
        "a download against, and the key of their local cache.",
    )
    sha256 = models.CharField(max_length=64)
    pair_count = models.PositiveIntegerField()
    label_ids = models.JSONField(help_text="Primary keys of every label used.")
    counts = models.JSONField(default=dict, help_text="Pairs, ties and both-bad left out, ...")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Snapshot {self.pk} ({self.pair_count} pairs)"


class DemonstrationSnapshot(models.Model):
    """The demonstrations one SFT run trained on: a JSONL file in TRL's SFT format (`messages`)
    and exactly which demonstrations, each in the text it had then."""

    project = models.ForeignKey("feedback.Project", on_delete=models.CASCADE)
    path = models.CharField(max_length=500, help_text="Relative to the artifact root.")
    manifest_sha256 = models.CharField(
        max_length=64,
        blank=True,
        help_text="sha256 of the artifact's manifest (each file's sha256): what readers check "
        "a download against, and the key of their local cache.",
    )
    sha256 = models.CharField(max_length=64)
    demonstration_count = models.PositiveIntegerField()
    demonstration_ids = models.JSONField(help_text="Primary keys of every demonstration used.")
    counts = models.JSONField(
        default=dict, help_text="Demonstrations by origin, prompts, how many were new, ..."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Demonstration snapshot {self.pk} ({self.demonstration_count} demonstrations)"


class SFTVersion(models.Model):
    """A LoRA adapter trained on the base model by supervised fine-tuning on demonstrations.

    Not a policy version: it is never evaluated, gated or promoted itself. It is where the
    policy versions trained from it start, and their KL reference (PolicyVersion.sft); its
    candidate is what the gates judge (docs/architecture.md, "SFT versions").
    """

    project = models.ForeignKey(
        "feedback.Project", on_delete=models.CASCADE, related_name="sft_versions"
    )
    number = models.PositiveIntegerField()
    adapter_path = models.CharField(max_length=500, help_text="Relative to the artifact root.")
    adapter_manifest_sha256 = models.CharField(
        max_length=64,
        blank=True,
        help_text="sha256 of the artifact's manifest (each file's sha256): what readers check "
        "a download against, and the key of their local cache.",
    )
    snapshot = models.ForeignKey(DemonstrationSnapshot, on_delete=models.PROTECT)
    training_run = models.OneToOneField(
        "TrainingRun", on_delete=models.PROTECT, related_name="sft_version"
    )
    heldout_loss = models.FloatField(
        null=True, blank=True, help_text="Per answer token on held-out demonstrations."
    )
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="unique_sft_number")
        ]

    def __str__(self) -> str:
        return f"SFT{self.number}"


class RewardModelVersion(models.Model):
    class Role(models.TextChoices):
        # Trained on the labels of train prompts; PPO climbs it.
        POLICY = "policy", "Trains the policy"
        # Trained on the labels of eval prompts only, which no policy reward model ever sees:
        # the independent judge of the promotion gates (docs/judgement.md).
        JUDGE = "judge", "Judges candidates"

    project = models.ForeignKey("feedback.Project", on_delete=models.CASCADE)
    number = models.PositiveIntegerField()
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.POLICY)
    adapter_path = models.CharField(max_length=500, help_text="Relative to the artifact root.")
    adapter_manifest_sha256 = models.CharField(
        max_length=64,
        blank=True,
        help_text="sha256 of the artifact's manifest (each file's sha256): what readers check "
        "a download against, and the key of their local cache.",
    )
    snapshot = models.ForeignKey(DatasetSnapshot, on_delete=models.PROTECT)
    training_run = models.OneToOneField("TrainingRun", on_delete=models.PROTECT)
    heldout_accuracy = models.FloatField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="unique_reward_number")
        ]

    def __str__(self) -> str:
        return f"RM{self.number}"


class PolicyVersion(models.Model):
    class Status(models.TextChoices):
        TRAINING = "training"
        CANDIDATE = "candidate"
        ACTIVE = "active"
        RETIRED = "retired"
        REJECTED = "rejected"
        ROLLED_BACK = "rolled_back"

    project = models.ForeignKey(
        "feedback.Project", on_delete=models.CASCADE, related_name="policy_versions"
    )
    number = models.PositiveIntegerField(help_text="0 is the base model without an adapter.")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT)
    adapter_path = models.CharField(
        max_length=500, blank=True, help_text="LoRA adapter folder, relative to the artifact root."
    )
    adapter_manifest_sha256 = models.CharField(
        max_length=64,
        blank=True,
        help_text="sha256 of the artifact's manifest (each file's sha256): what readers check "
        "a download against, and the key of their local cache.",
    )
    status = models.CharField(max_length=12, choices=Status.choices)
    reward_model = models.ForeignKey(
        RewardModelVersion, null=True, blank=True, on_delete=models.PROTECT
    )
    training_run = models.OneToOneField(
        "TrainingRun", null=True, blank=True, on_delete=models.PROTECT, related_name="policy"
    )
    sft = models.ForeignKey(
        SFTVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="policies",
        help_text="The SFT version at the root of this version's line (none: the base model): "
        "where the line started, and the reference PPO and DPO are held to.",
    )
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    promoted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="unique_policy_number"),
            models.UniqueConstraint(
                fields=["project"], condition=Q(status="active"), name="one_active_policy"
            ),
        ]

    def __str__(self) -> str:
        return f"v{self.number}"


# An iteration in one of these holds the project's loop: the database allows one at a time.
ITERATION_RUNNING_STATUSES = (
    "collecting",
    "sft",
    "reward",
    "ppo",
    "dpo",
    "evaluating",
    "awaiting_humans",
    "awaiting_approval",
    "promoting",
    "generating",
)


class LoopIteration(models.Model):
    """One turn of the loop: snapshots, SFT (when enough new demonstrations wait), reward
    models, PPO or DPO (the project's optimizer), evaluation and gates, promotion, new
    comparisons."""

    class Trigger(models.TextChoices):
        MANUAL = "manual"
        LABELS = "labels"
        SCHEDULE = "schedule"

    class Status(models.TextChoices):
        COLLECTING = "collecting"
        SFT = "sft", "SFT"
        REWARD = "reward", "Training the reward model"
        PPO = "ppo", "PPO"
        DPO = "dpo", "DPO"
        EVALUATING = "evaluating"
        # The human gate: candidate-versus-active comparisons are out with the annotators.
        AWAITING_HUMANS = "awaiting_humans", "Waiting for human labels"
        AWAITING_APPROVAL = "awaiting_approval", "Waiting for approval"
        PROMOTING = "promoting"
        GENERATING = "generating", "Generating new comparisons"
        DONE = "done"
        REJECTED = "rejected", "Rejected by the gates"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE_STATUSES = ITERATION_RUNNING_STATUSES

    project = models.ForeignKey(
        "feedback.Project", on_delete=models.CASCADE, related_name="iterations"
    )
    number = models.PositiveIntegerField()
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.COLLECTING)
    snapshot = models.ForeignKey(DatasetSnapshot, null=True, blank=True, on_delete=models.PROTECT)
    demonstrations = models.ForeignKey(
        DemonstrationSnapshot,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        help_text="The demonstrations of this iteration's SFT step (none: no SFT step).",
    )
    sft = models.ForeignKey(
        SFTVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The SFT version this iteration trained; its candidate starts from it.",
    )
    reward_model = models.ForeignKey(
        RewardModelVersion, null=True, blank=True, on_delete=models.PROTECT
    )
    judge = models.ForeignKey(
        RewardModelVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="judged_iterations",
        help_text="The independent judge of this iteration's candidate (none: too few labels).",
    )
    policy = models.ForeignKey(PolicyVersion, null=True, blank=True, on_delete=models.PROTECT)
    evaluation = models.JSONField(
        default=dict, blank=True, help_text="Candidate against the active policy, and the gates."
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="unique_iteration_number"),
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(status__in=ITERATION_RUNNING_STATUSES),
                name="one_running_iteration",
            ),
        ]

    def __str__(self) -> str:
        return f"Iteration {self.number}"

    @property
    def is_running(self) -> bool:
        return self.status in self.ACTIVE_STATUSES


class TrainingRun(models.Model):
    """A job on a worker. The row is the source of truth; the queue carries only its id."""

    class Kind(models.TextChoices):
        GENERATE = "generate", "Generation"
        SFT = "sft", "SFT"
        REWARD = "reward", "Reward"
        PPO = "ppo", "PPO"
        DPO = "dpo", "DPO"
        EVALUATE = "evaluate", "Evaluation"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    project = models.ForeignKey(
        "feedback.Project", on_delete=models.CASCADE, related_name="training_runs"
    )
    iteration = models.ForeignKey(
        LoopIteration, null=True, blank=True, on_delete=models.CASCADE, related_name="runs"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    config = models.JSONField(default=dict, blank=True)
    summary = models.JSONField(default=dict, blank=True, help_text="Final metrics.")
    log_tail = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    worker = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.kind} run {self.pk} ({self.status})"

    @property
    def duration_seconds(self) -> float | None:
        if not self.started_at:
            return None
        end = self.finished_at or self.heartbeat_at or self.started_at
        return (end - self.started_at).total_seconds()


class RunMetric(models.Model):
    """One logging step of a run: {"loss": ..., "objective/kl": ...}."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="metrics")
    step = models.PositiveIntegerField()
    values = models.JSONField()
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "step", "id"]
        indexes = [models.Index(fields=["run", "step"])]

    def __str__(self) -> str:
        return f"run {self.run_id} step {self.step}"


class FreshLabelScore(models.Model):
    """A human label that arrived after a reward model was trained, scored by that model.

    Every such label is a free test of the reward model (docs/judgement.md, "Reward-model
    health on fresh labels"). Only decisive labels (A or B) are scored; a label withdrawn or
    rejected later keeps its row and is left out when the health is read.
    """

    reward_model = models.ForeignKey(
        RewardModelVersion, on_delete=models.CASCADE, related_name="fresh_scores"
    )
    label = models.ForeignKey(
        "feedback.PreferenceLabel", on_delete=models.CASCADE, related_name="+"
    )
    margin = models.FloatField(
        help_text="Reward of the answer the label prefers minus the other answer's reward."
    )
    agrees = models.BooleanField(help_text="The reward model prefers the same answer (margin > 0).")
    scored_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["reward_model", "label"], name="one_score_per_reward_model_and_label"
            )
        ]

    def __str__(self) -> str:
        return f"RM{self.reward_model_id} on label {self.label_id}: {self.margin:+.3f}"
