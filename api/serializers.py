"""What the API reads and writes. Output serializers are read-only views of the rows."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from feedback.exports import SFT_SPLITS, SFT_STYLES
from feedback.imports import DEMONSTRATION_FORMATS, DUPLICATES, FORMATS
from feedback.models import (
    MAX_DEMONSTRATION_CHARS,
    MAX_TIME_SPENT_MS,
    PROJECT_GATE_FIELDS,
    AuditEvent,
    Comparison,
    Completion,
    Demonstration,
    DemonstrationAudit,
    Optimizer,
    PreferenceLabel,
    Project,
    Prompt,
    RestartFrom,
)
from training.exports import PREFERENCE_FORMATS, STYLES, VOTE_FORMATS
from training.models import (
    DatasetSnapshot,
    DemonstrationSnapshot,
    LoopIteration,
    PolicyVersion,
    RunMetric,
    SFTVersion,
    TrainingRun,
)
from training.selectors import LOOP_WAIT_CODES

# --- Output ---------------------------------------------------------------------------------


class ProjectSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField(help_text="Your role in this project.")

    class Meta:
        model = Project
        fields = [
            "slug",
            "name",
            "guidelines",
            "base_model",
            "max_new_tokens",
            "temperature",
            "top_p",
            "labels_per_comparison",
            "gold_rate",
            "lease_minutes",
            "trigger_new_labels",
            "comparisons_per_iteration",
            *PROJECT_GATE_FIELDS,
            "optimizer",
            "restart_from",
            "sft_min_demonstrations",
            "demonstrations_per_prompt",
            "answer_edits",
            "reward_length_control",
            "created_at",
            "role",
        ]
        read_only_fields = fields

    def get_role(self, project: Project) -> str:
        return self.context["roles"][project.pk]


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["system", "user", "assistant"])
    content = serializers.CharField()


class PromptSerializer(serializers.ModelSerializer):
    messages = MessageSerializer(many=True)
    text = serializers.CharField(help_text="The last user turn.")

    class Meta:
        model = Prompt
        fields = ["id", "messages", "text", "split", "source", "metadata", "created_at"]
        read_only_fields = fields


class CompletionSerializer(serializers.ModelSerializer):
    policy_version = serializers.IntegerField(
        source="policy_version.number",
        allow_null=True,
        default=None,
        help_text="The version that sampled it; null for a person's edit (kind human).",
    )

    class Meta:
        model = Completion
        fields = [
            "id",
            "kind",
            "text",
            "policy_version",
            "token_count",
            "finish_reason",
            "sampling",
        ]
        read_only_fields = fields


class ComparisonSerializer(serializers.ModelSerializer):
    prompt = PromptSerializer()
    completion_a = CompletionSerializer()
    completion_b = CompletionSerializer()
    label_count = serializers.IntegerField()

    class Meta:
        model = Comparison
        fields = [
            "id",
            "kind",
            "status",
            "required_labels",
            "label_count",
            "priority",
            "prompt",
            "completion_a",
            "completion_b",
            "created_at",
        ]
        read_only_fields = fields


class LabelSerializer(serializers.ModelSerializer):
    annotator = serializers.CharField(source="annotator.username")

    class Meta:
        model = PreferenceLabel
        fields = [
            "id",
            "comparison_id",
            "annotator",
            "choice",
            "strength",
            "rationale",
            "time_spent_ms",
            "a_shown_left",
            "review_status",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class DemonstrationSerializer(serializers.ModelSerializer):
    prompt = PromptSerializer()
    author = serializers.CharField(
        source="author.username", allow_null=True, help_text="null: imported (see source)."
    )
    original = serializers.CharField(
        source="original.text",
        allow_null=True,
        default=None,
        help_text="The answer that was edited (origin edited); null otherwise.",
    )
    comparison_id = serializers.IntegerField(
        allow_null=True,
        help_text="An edit's comparison (the edit as A against the original as B), which holds "
        "the author's label preferring the edit.",
    )
    reviewed_by = serializers.CharField(
        source="reviewed_by.username", allow_null=True, default=None
    )

    class Meta:
        model = Demonstration
        fields = [
            "id",
            "origin",
            "prompt",
            "text",
            "original",
            "author",
            "comparison_id",
            "review_status",
            "reviewed_by",
            "reviewed_at",
            "withdrawn_at",
            "source",
            "metadata",
            "time_spent_ms",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class DemonstrationAuditSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(
        source="actor.username", allow_null=True, help_text="null: a command line."
    )
    before = serializers.JSONField(allow_null=True)
    after = serializers.JSONField(allow_null=True)

    class Meta:
        model = DemonstrationAudit
        fields = ["at", "actor", "action", "before", "after"]
        read_only_fields = fields


class DiffSegmentSerializer(serializers.Serializer):
    op = serializers.ChoiceField(choices=["equal", "delete", "insert"])
    text = serializers.CharField()


class DemonstrationDetailSerializer(DemonstrationSerializer):
    diff = DiffSegmentSerializer(
        many=True,
        allow_null=True,
        help_text="For an edit: from the original answer to the text now, word by word.",
    )
    audits = DemonstrationAuditSerializer(many=True, help_text="Every change, oldest first.")

    class Meta(DemonstrationSerializer.Meta):
        fields = [*DemonstrationSerializer.Meta.fields, "diff", "audits"]
        read_only_fields = fields


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(
        source="actor.username", allow_null=True, help_text="null: the system."
    )
    before = serializers.JSONField(allow_null=True, help_text="The state before; people by id.")
    after = serializers.JSONField(allow_null=True, help_text="The state after; people by id.")

    class Meta:
        model = AuditEvent
        fields = ["id", "at", "actor", "action", "target_type", "target_id", "before", "after"]
        read_only_fields = fields


class SnapshotSerializer(serializers.ModelSerializer):
    label_count = serializers.SerializerMethodField()

    class Meta:
        model = DatasetSnapshot
        fields = ["id", "sha256", "pair_count", "label_count", "counts", "created_at"]
        read_only_fields = fields

    def get_label_count(self, snapshot: DatasetSnapshot) -> int:
        return len(snapshot.label_ids)


class RunSerializer(serializers.ModelSerializer):
    iteration = serializers.IntegerField(source="iteration.number", allow_null=True)
    duration_seconds = serializers.FloatField(allow_null=True)

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "kind",
            "status",
            "cancel_requested",
            "iteration",
            "config",
            "summary",
            "error",
            "worker",
            "log_tail",
            "queued_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
            "duration_seconds",
        ]
        read_only_fields = fields


class RunMetricSerializer(serializers.ModelSerializer):
    class Meta:
        model = RunMetric
        fields = ["step", "values", "at"]
        read_only_fields = fields


class HumanGateSerializer(serializers.Serializer):
    name = serializers.CharField()
    value = serializers.FloatField(
        allow_null=True,
        help_text="The candidate's win probability against the active policy (Bradley-Terry "
        "on human labels); null before the first label.",
    )
    low = serializers.FloatField(allow_null=True, help_text="Bootstrap 2.5th percentile.")
    high = serializers.FloatField(allow_null=True, help_text="Bootstrap 97.5th percentile.")
    threshold = serializers.CharField()
    labels = serializers.IntegerField(help_text="Labels counted (both-bad labels are not).")
    labels_needed = serializers.IntegerField()
    open_comparisons = serializers.IntegerField(
        help_text="The candidate's comparisons still taking labels."
    )
    decision = serializers.ChoiceField(
        choices=["waiting", "passed", "failed", "off"],
        help_text="off: an admin turned the gate off while the candidate waited.",
    )
    passed = serializers.BooleanField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)


class IterationSerializer(serializers.ModelSerializer):
    snapshot = serializers.IntegerField(source="snapshot_id", allow_null=True)
    demonstrations = serializers.IntegerField(
        source="demonstrations_id",
        allow_null=True,
        help_text="The demonstration snapshot of the iteration's SFT step (null: no SFT step).",
    )
    sft = serializers.IntegerField(
        source="sft.number",
        allow_null=True,
        help_text="The SFT version the iteration trained (its candidate starts from it).",
    )
    reward_model = serializers.IntegerField(source="reward_model.number", allow_null=True)
    judge = serializers.IntegerField(
        source="judge.number",
        allow_null=True,
        help_text="The independent judge's reward model (trained on eval prompts' labels only).",
    )
    policy = serializers.IntegerField(source="policy.number", allow_null=True)
    rm_win_rate = serializers.FloatField(
        source="evaluation.win_rate",
        allow_null=True,
        default=None,
        help_text="The candidate's win rate by the reward model it was trained against.",
    )
    judge_win_rate = serializers.FloatField(
        source="evaluation.judge.win_rate",
        allow_null=True,
        default=None,
        help_text="The candidate's win rate by the independent judge.",
    )
    overoptimization_gap = serializers.FloatField(
        source="evaluation.overoptimization_gap",
        allow_null=True,
        default=None,
        help_text="rm_win_rate minus judge_win_rate: how far the candidate games its reward model.",
    )
    human_gate = serializers.SerializerMethodField(
        help_text="The human gate (also in evaluation.human_gate); null when the project has "
        "none or the candidate never reached it."
    )

    class Meta:
        model = LoopIteration
        fields = [
            "number",
            "trigger",
            "status",
            "snapshot",
            "demonstrations",
            "sft",
            "reward_model",
            "judge",
            "policy",
            "rm_win_rate",
            "judge_win_rate",
            "overoptimization_gap",
            "evaluation",
            "human_gate",
            "error",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field(HumanGateSerializer(allow_null=True))
    def get_human_gate(self, iteration: LoopIteration) -> dict | None:
        return (iteration.evaluation or {}).get("human_gate")


class LoopStateSerializer(serializers.Serializer):
    waiting_for = serializers.ChoiceField(
        choices=list(LOOP_WAIT_CODES.items()), help_text="What the loop waits for, as a code."
    )
    message = serializers.CharField(
        help_text='The same for people: "The loop is waiting for <message>."'
    )
    iteration = IterationSerializer(
        allow_null=True, help_text="The running iteration (one at most), or null."
    )


class PolicySerializer(serializers.ModelSerializer):
    parent = serializers.IntegerField(source="parent.number", allow_null=True)
    reward_model = serializers.IntegerField(source="reward_model.number", allow_null=True)
    sft = serializers.IntegerField(
        source="sft.number",
        allow_null=True,
        help_text="The SFT version at the root of this version's line (null: the base model): "
        "PPO's KL reference.",
    )

    class Meta:
        model = PolicyVersion
        fields = [
            "number",
            "status",
            "parent",
            "adapter_path",
            "reward_model",
            "sft",
            "training_run",
            "metrics",
            "created_at",
            "promoted_at",
        ]
        read_only_fields = fields


class DemonstrationSnapshotSerializer(serializers.ModelSerializer):
    class Meta:
        model = DemonstrationSnapshot
        fields = [
            "id",
            "sha256",
            "demonstration_count",
            "demonstration_ids",
            "counts",
            "created_at",
        ]
        read_only_fields = fields


class SFTVersionSerializer(serializers.ModelSerializer):
    snapshot = DemonstrationSnapshotSerializer(
        help_text="The demonstrations that made it: accepted ones on train prompts."
    )
    policies = serializers.SerializerMethodField(
        help_text="The policy versions whose line it roots (they start from it or from one of "
        "its descendants)."
    )

    class Meta:
        model = SFTVersion
        fields = [
            "number",
            "adapter_path",
            "snapshot",
            "training_run",
            "heldout_loss",
            "metrics",
            "policies",
            "created_at",
        ]
        read_only_fields = fields

    def get_policies(self, sft: SFTVersion) -> list[int]:
        return [policy.number for policy in sft.policies.all()]


class LeaderboardEntrySerializer(serializers.Serializer):
    version = serializers.IntegerField()
    status = serializers.CharField()
    rating = serializers.FloatField(allow_null=True)
    low = serializers.FloatField(allow_null=True, help_text="Bootstrap 2.5th percentile.")
    high = serializers.FloatField(allow_null=True, help_text="Bootstrap 97.5th percentile.")
    games = serializers.IntegerField(help_text="Human votes between this and another version.")


class LeaderboardSerializer(serializers.Serializer):
    method = serializers.CharField(help_text="How versions are rated: 'bradley_terry'.")
    versions = LeaderboardEntrySerializer(many=True)


class AgreementSerializer(serializers.Serializer):
    labels = serializers.IntegerField(help_text="Fresh decisive labels scored.")
    agreement = serializers.FloatField(
        source="rate", allow_null=True, help_text="Share the reward model agrees with."
    )


class MarginBucketSerializer(AgreementSerializer):
    low = serializers.FloatField(help_text="Smallest |margin| of the bucket.")
    high = serializers.FloatField(allow_null=True, help_text="|margin| below it (null: none).")


class DayAgreementSerializer(AgreementSerializer):
    date = serializers.DateField(help_text="Day the labels were created.")
    day = serializers.IntegerField(help_text="Days after the reward model's snapshot.")


class FreshHealthSerializer(AgreementSerializer):
    agreed = serializers.IntegerField()
    agreement = serializers.FloatField(allow_null=True)
    low = serializers.FloatField(allow_null=True, help_text="Wilson 95% interval, lower end.")
    high = serializers.FloatField(allow_null=True, help_text="Wilson 95% interval, upper end.")
    not_scorable = serializers.IntegerField(help_text="Fresh ties and both-bad labels.")
    waiting = serializers.IntegerField(help_text="Fresh decisive labels not scored yet.")
    alarm = serializers.BooleanField(
        help_text="The interval lies entirely below the held-out accuracy."
    )
    calibration = MarginBucketSerializer(many=True)
    by_day = DayAgreementSerializer(many=True)


class HeldoutSliceSerializer(serializers.Serializer):
    pairs = serializers.IntegerField()
    accuracy = serializers.FloatField(allow_null=True, help_text="null: no pair in the slice.")


class HeldoutReportSerializer(serializers.Serializer):
    accuracy = serializers.FloatField(allow_null=True)
    pairs = serializers.IntegerField(help_text="Held-out pairs (whole prompts kept apart).")
    chosen_shorter = HeldoutSliceSerializer(help_text="Pairs whose chosen answer is shorter.")
    chosen_longer = HeldoutSliceSerializer(help_text="Pairs whose chosen answer is longer.")
    same_length = HeldoutSliceSerializer(help_text="Pairs whose answers have the same length.")
    picks_shorter = serializers.FloatField(
        allow_null=True,
        help_text="Share of held-out pairs of different lengths where the model prefers the "
        "shorter answer (null: none, or trained before it was measured).",
    )
    labels_pick_shorter = serializers.FloatField(
        allow_null=True, help_text="Share of the same pairs where the label prefers it."
    )


class LengthControlSerializer(serializers.Serializer):
    enabled = serializers.BooleanField(
        help_text="Trained with length-balanced loss weights (Project.reward_length_control)."
    )
    train_pairs = serializers.IntegerField(allow_null=True)
    effective_pairs = serializers.FloatField(
        allow_null=True,
        help_text="What the weighted training pairs were worth in unweighted pairs (Kish's "
        "effective sample size); null without length control.",
    )
    train_labels_pick_shorter = serializers.FloatField(
        allow_null=True,
        help_text="Share of the training pairs of different lengths whose chosen answer is the "
        "shorter.",
    )


class RewardModelSerializer(serializers.Serializer):
    number = serializers.IntegerField(source="reward_model.number")
    role = serializers.CharField(source="reward_model.role", help_text="'policy' or 'judge'.")
    snapshot = serializers.IntegerField(source="reward_model.snapshot_id")
    training_run = serializers.IntegerField(source="reward_model.training_run_id")
    created_at = serializers.DateTimeField(source="reward_model.created_at")
    heldout_accuracy = serializers.FloatField(allow_null=True)
    heldout = HeldoutReportSerializer(
        help_text="Held-out accuracy by whether the chosen answer is the shorter or the longer, "
        "and how often the model picks the shorter answer (docs/judgement.md)."
    )
    length_control = LengthControlSerializer(source="heldout.length_control")
    fresh = FreshHealthSerializer(source="*", help_text="Against labels newer than its data.")


class PromptImportResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    skipped_duplicates = serializers.ListField(child=serializers.DictField())
    prompt_ids = serializers.ListField(child=serializers.IntegerField())


class DemonstrationImportResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    prompts_created = serializers.IntegerField()
    skipped_duplicates = serializers.ListField(child=serializers.DictField())
    demonstration_ids = serializers.ListField(child=serializers.IntegerField())


class PromptToWriteSerializer(serializers.Serializer):
    prompt = PromptSerializer()
    waiting = serializers.IntegerField(
        help_text="Prompts that wait for a demonstration from you, this one included."
    )


class LabelImportResultSerializer(serializers.Serializer):
    comparisons = serializers.IntegerField()
    labels = serializers.IntegerField()
    prompts_created = serializers.IntegerField()
    annotators = serializers.ListField(child=serializers.CharField())
    skipped = serializers.ListField(child=serializers.DictField())


# --- Input ----------------------------------------------------------------------------------


class PromptCreateSerializer(serializers.Serializer):
    prompts = serializers.ListField(
        child=serializers.JSONField(),
        allow_empty=False,
        help_text='Records: {"prompt": text or chat turns, "split": "train"|"eval", '
        '"metadata": {...}}.',
    )
    duplicates = serializers.ChoiceField(choices=DUPLICATES, default="error")


class PromptUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="JSONL, CSV or a JSON list.")
    file_format = serializers.ChoiceField(
        choices=FORMATS, required=False, help_text="Default: from the file name, else sniffed."
    )
    duplicates = serializers.ChoiceField(choices=DUPLICATES, default="error")


_DEMONSTRATION_TEXT_HELP = (
    f"The answer: at most {MAX_DEMONSTRATION_CHARS} characters once stripped of surrounding "
    "white space, no control characters but tabs and line breaks."
)


class DemonstrationCreateSerializer(serializers.Serializer):
    prompt_id = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    text = serializers.CharField(
        allow_blank=True, trim_whitespace=False, help_text=_DEMONSTRATION_TEXT_HELP
    )
    time_spent_ms = serializers.IntegerField(
        required=False, default=0, min_value=0, max_value=MAX_TIME_SPENT_MS
    )


class DemonstrationReviewSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(
        choices=[
            Demonstration.ReviewStatus.ACCEPTED,
            Demonstration.ReviewStatus.REJECTED,
            Demonstration.ReviewStatus.UNREVIEWED,
        ],
        required=False,
        help_text="accepted, rejected, or unreviewed (back to the queue).",
    )
    text = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="A correction: the new text (the demonstration becomes corrected). "
        + _DEMONSTRATION_TEXT_HELP,
    )

    def validate(self, attrs: dict) -> dict:
        if ("decision" in attrs) == ("text" in attrs):
            raise serializers.ValidationError(
                "Send either a decision (accepted, rejected, unreviewed) or a corrected text."
            )
        return attrs


class DemonstrationUploadSerializer(serializers.Serializer):
    file = serializers.FileField(
        help_text="JSONL or a JSON list of TRL SFT records: messages, or prompt and completion."
    )
    file_format = serializers.ChoiceField(
        choices=DEMONSTRATION_FORMATS,
        required=False,
        help_text="Default: from the file name, else sniffed.",
    )
    duplicates = serializers.ChoiceField(choices=DUPLICATES, default="error")


class LabelUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A Label Studio JSON export of a pairwise project.")
    prompt_field = serializers.CharField(default="prompt", max_length=100)
    answer_a_field = serializers.CharField(default="answer1", max_length=100)
    answer_b_field = serializers.CharField(default="answer2", max_length=100)


class ProjectTrainingSerializer(serializers.Serializer):
    """What PATCH /api/projects/<slug>/ may change: how an iteration trains its candidate."""

    optimizer = serializers.ChoiceField(
        choices=Optimizer.choices,
        required=False,
        help_text="ppo: PPO against the policy's reward model; dpo: DPO on the preference pairs.",
    )
    restart_from = serializers.ChoiceField(
        choices=RestartFrom.choices,
        required=False,
        help_text="active: continue the active version's adapter; base: a new adapter on the "
        "base model each iteration (with an SFT stage: a new line from the latest SFT version).",
    )
    sft_min_demonstrations = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        error_messages={
            "min_value": "The SFT stage needs at least 1 new accepted demonstration; send null "
            "for no SFT stage."
        },
        help_text="An iteration first trains SFT when at least this many accepted "
        "demonstrations are new to the latest SFT version; null: no SFT stage.",
    )
    reward_length_control = serializers.BooleanField(
        required=False,
        help_text="true: train the reward models with length-balanced loss weights, so that "
        'answer length alone predicts nothing in their labels (docs/judgement.md, "Length").',
    )

    def validate(self, attrs: dict) -> dict:
        other = sorted(set(self.initial_data) - set(self.fields))
        if other:
            raise serializers.ValidationError(
                "Only optimizer, restart_from, reward_length_control and sft_min_demonstrations "
                "can be changed here, "
                f"not: {', '.join(other)}."
            )
        if not attrs:
            raise serializers.ValidationError(
                "Nothing to change: send optimizer, restart_from, reward_length_control or "
                "sft_min_demonstrations."
            )
        return attrs


class RunCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=[TrainingRun.Kind.GENERATE],
        help_text="'generate': sample new comparisons from the active policy. Reward, PPO and DPO "
        "runs belong to an iteration: POST iterations/.",
    )


class PromptFilterSerializer(serializers.Serializer):
    split = serializers.ChoiceField(choices=Prompt.Split.choices, required=False)
    source = serializers.CharField(required=False, max_length=200)


class ComparisonFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Comparison.Status.choices, required=False)
    kind = serializers.ChoiceField(choices=Comparison.Kind.choices, required=False)


class LabelFilterSerializer(serializers.Serializer):
    annotator = serializers.CharField(required=False, max_length=150, help_text="A username.")
    status = serializers.ChoiceField(
        choices=PreferenceLabel.ReviewStatus.choices, required=False, help_text="Review status."
    )
    choice = serializers.ChoiceField(choices=PreferenceLabel.Choice.choices, required=False)
    comparison = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)


class DemonstrationFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=Demonstration.ReviewStatus.choices, required=False, help_text="Review status."
    )
    origin = serializers.ChoiceField(choices=Demonstration.Origin.choices, required=False)
    author = serializers.CharField(required=False, max_length=150, help_text="A username.")
    prompt = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)


class AuditFilterSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=AuditEvent.Action.choices, required=False)
    actor = serializers.CharField(required=False, max_length=150, help_text="A username.")


class RunFilterSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=TrainingRun.Kind.choices, required=False)
    status = serializers.ChoiceField(choices=TrainingRun.Status.choices, required=False)


class PreferenceExportSerializer(serializers.Serializer):
    file_format = serializers.ChoiceField(
        choices=PREFERENCE_FORMATS,
        default="jsonl",
        help_text="jsonl, or hf: a zipped Hugging Face datasets folder (save_to_disk).",
    )
    style = serializers.ChoiceField(
        choices=STYLES,
        default="auto",
        help_text="auto: conversational when any prompt is a chat, standard strings otherwise.",
    )


class VoteExportSerializer(serializers.Serializer):
    file_format = serializers.ChoiceField(choices=VOTE_FORMATS, default="jsonl")


class DemonstrationExportSerializer(serializers.Serializer):
    style = serializers.ChoiceField(
        choices=SFT_STYLES,
        default="messages",
        help_text='messages: {"messages": [...]}; prompt_completion: {"prompt", "completion"}.',
    )
    split = serializers.ChoiceField(
        choices=SFT_SPLITS,
        default="train",
        help_text="The prompts' split (train: what SFT should see; all: every split).",
    )
