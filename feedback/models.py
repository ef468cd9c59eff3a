"""Projects, prompts, completions, comparisons, assignments and preference labels."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import (
    MaxLengthValidator,
    MaxValueValidator,
    MinValueValidator,
    RegexValidator,
)
from django.db import models
from django.db.models import Q
from django.utils import timezone

from feedback.training_config import launch_errors

# What people type: the same limits on every way in (the API and its fast path, the pages,
# the models' validation), each message naming the field.
MAX_RATIONALE_CHARS = 4_000
MAX_FLAG_NOTE_CHARS = 2_000
MAX_TIME_SPENT_MS = 24 * 3600 * 1000  # a day: anything longer is a broken client clock
# A demonstration (an answer a person writes or edits): the same limit on the labeling page,
# the API and imports. Far above any answer the loop samples, far below what a page can hold.
MAX_DEMONSTRATION_CHARS = 20_000


def no_control_characters(name: str) -> RegexValidator:
    """Text without control characters but tab and line breaks (NUL cannot even be stored;
    the others have no business in what people write, and escape codes would travel on into
    exports)."""
    return RegexValidator(
        "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]",
        inverse_match=True,
        message=f"The {name} contains a control character; tabs and line breaks are the only "
        "ones allowed.",
        code="control_character",
    )


def text_validators(name: str, limit: int) -> list:
    """Free text people post: at most `limit` characters, no control characters."""
    return [
        MaxLengthValidator(
            limit,
            message=f"The {name} may have at most {limit} characters (it has %(show_value)d).",
        ),
        no_control_characters(name),
    ]


class TieHandling(models.TextChoices):
    # Tie and both-bad labels do not vote; the A/B labels decide and set the margin.
    ABSTAIN = "abstain", "Ties and both-bad abstain"
    # They vote for "no preference": they pull the margin towards 0 and, when they are at
    # least half of the labels, the comparison is left out of training.
    COUNT = "count", "Ties and both-bad count as no preference"


class Optimizer(models.TextChoices):
    # The loop trains a reward model and climbs it with Hone's PPO (training/ml/ppo.py).
    PPO = "ppo", "PPO against the policy's reward model"
    # The loop trains the policy on the preference pairs directly (training/ml/dpo.py).
    DPO = "dpo", "DPO on the preference pairs"


class RestartFrom(models.TextChoices):
    # Each candidate continues the active version's adapter: its KL to the base adds up.
    ACTIVE = "active", "The active version's adapter"
    # Each candidate is a new adapter on the base model, trained on all the data so far.
    BASE = "base", "The base model"


class Choice(models.TextChoices):
    A = "a", "A is better"
    B = "b", "B is better"
    TIE = "tie", "Tie"
    BOTH_BAD = "both_bad", "Both bad"


def pseudonym_key_new() -> str:
    return secrets.token_hex(32)  # 256 bits


def pseudonym_of(*, key: str, text: str) -> str:
    """`text` under `key`: HMAC-SHA256, the first 128 bits in hex."""
    return hmac.new(bytes.fromhex(key), text.encode(), hashlib.sha256).hexdigest()[:32]


class ComparisonStrategy(models.TextChoices):
    # The prompts with the fewest open comparisons, oldest first; two answers of the policy.
    FIFO = "fifo", "Fewest open comparisons first, oldest first"
    # A larger pool of candidate pairs, scored by the latest reward models; the pairs they are
    # least sure of are kept, and served first (docs/uncertainty.md).
    UNCERTAINTY = "uncertainty", "Where the reward models are least sure"


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
    # Quality control.
    gold_accuracy_threshold = models.FloatField(
        default=0.7,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Annotators whose gold accuracy is below this are flagged for review.",
    )
    gold_min_labels = models.PositiveSmallIntegerField(
        default=5, help_text="Gold labels an annotator needs before their accuracy can flag them."
    )
    repeat_rate = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of requests that bring back an earlier item, sides swapped.",
    )
    tie_handling = models.CharField(
        max_length=8,
        choices=TieHandling.choices,
        default=TieHandling.ABSTAIN,
        help_text="How tie and both-bad labels enter the training vote.",
    )
    rationale_required_for_both_bad = models.BooleanField(
        default=False, help_text='Annotators must explain a "both bad" label.'
    )
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
        help_text="Largest mean KL to the base model, or for a candidate of an SFT line to its "
        "SFT version (nats per answer).",
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
    # The human gate: after the gates above, people judge the candidate against the active
    # policy on the eval prompts before it may be promoted (training/gates.py).
    gate_human_min_win_rate = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Least human win probability of the candidate against the active policy: "
        "the lower end of its bootstrap 95% interval must reach it (empty: no human gate).",
    )
    gate_human_labels = models.PositiveIntegerField(
        default=30,
        validators=[MinValueValidator(1)],
        help_text="Human labels on candidate-versus-active comparisons the human gate needs "
        "before it decides (both-bad labels do not count).",
    )
    # The independent judge (docs/judgement.md): a reward model trained on the labels of eval
    # prompts only, which the policy's reward model never sees, judges each candidate.
    gate_judge_min_win_rate = models.FloatField(
        null=True,
        blank=True,
        default=0.5,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Least win rate of the candidate against the active policy by the independent "
        "judge (empty: no judge gate; then only people or an admin may promote).",
    )
    gate_max_overoptimization = models.FloatField(
        default=0.25,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Largest gap between the training reward model's win rate and the judge's: "
        "beyond it the candidate games its reward model and is rejected.",
    )
    judge_min_pairs = models.PositiveIntegerField(
        default=8,
        validators=[MinValueValidator(2)],
        help_text="Preference pairs on eval prompts the judge needs before it may judge; with "
        "fewer, a candidate waits for the human gate or an admin.",
    )
    comparison_strategy = models.CharField(
        max_length=12,
        choices=ComparisonStrategy.choices,
        default=ComparisonStrategy.FIFO,
        error_messages={
            "invalid_choice": "%(value)r is not a comparison strategy: choose fifo or uncertainty."
        },
        help_text="Which new comparisons go to annotators: fifo (the prompts with the fewest "
        "open comparisons, oldest first) or uncertainty (the pairs the latest reward models are "
        "least sure of, served first; fifo until a first reward model exists).",
    )
    judge_share = models.FloatField(
        default=0.25,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.9)],
        help_text="Share of each batch of new comparisons drawn from eval prompts: the judge's "
        "labels, never seen by the policy's reward model.",
    )
    # Reward-model health (docs/judgement.md): labels that arrive after a reward model was
    # trained test it; PPO refuses a reward model that people have stopped agreeing with.
    ppo_min_fresh_agreement = models.FloatField(
        null=True,
        blank=True,
        default=None,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Least agreement of the reward model with the labels that arrived after it "
        "was trained: below it PPO refuses to run and the iteration fails (empty: off).",
    )
    ppo_fresh_min_labels = models.PositiveIntegerField(
        default=30,
        validators=[MinValueValidator(1)],
        help_text="Fresh labels the reward model must have scored before its agreement may "
        "stop PPO (with fewer, PPO runs).",
    )
    # How an iteration trains its candidate (README, "The loop").
    optimizer = models.CharField(
        max_length=8,
        choices=Optimizer.choices,
        default=Optimizer.PPO,
        error_messages={"invalid_choice": "Unknown optimizer %(value)r: use 'ppo' or 'dpo'."},
        help_text="How an iteration trains its candidate: PPO against the policy's reward model, "
        "or DPO on the preference pairs (the reward models still serve the gates).",
    )
    restart_from = models.CharField(
        max_length=8,
        choices=RestartFrom.choices,
        default=RestartFrom.ACTIVE,
        error_messages={
            "invalid_choice": "Unknown restart_from %(value)r: use 'active' or 'base'."
        },
        help_text="Where PPO or DPO starts: the active version's adapter (KL to the base adds up "
        "across iterations) or the base model (each candidate a new adapter; recommended with "
        "DPO, which has no KL term to slow its drift).",
    )
    # Shortcut control (docs/judgement.md, "Length"): reward models trained so that answer
    # length alone predicts nothing in their labels.
    reward_length_control = models.BooleanField(
        default=False,
        help_text="Train the reward models with length controlled: the pairs won by the longer "
        "answer and those won by the shorter weigh the same in their loss, so length alone "
        "predicts nothing and they learn what else the labels prefer (when the labels lean one "
        "way, the weighted pairs are worth fewer: each reward model reports how many).",
    )
    # The SFT stage (README, "The loop"): supervised fine-tuning on accepted demonstrations
    # before PPO or DPO, which then start from its adapter and are held to it.
    sft_min_demonstrations = models.PositiveIntegerField(
        null=True,
        blank=True,
        default=None,
        validators=[
            MinValueValidator(
                1,
                message="The SFT stage needs at least 1 new accepted demonstration; leave it "
                "empty for no SFT stage.",
            )
        ],
        help_text="An iteration first trains SFT (from the base model, on every accepted "
        "demonstration of the train prompts) when at least this many accepted demonstrations "
        "are new to the latest SFT version; PPO or DPO then start from that adapter, with it as "
        "their KL reference (empty: no SFT stage).",
    )
    training_config = models.JSONField(
        default=dict,
        blank=True,
        help_text="Overrides of the stages' settings: sft, reward, ppo, dpo, evaluate, generate; "
        "and launch: the training jobs' processes and accelerate config file (README, Production).",
    )
    # Demonstrations (docs/demonstrations.md): answers people write or edit, SFT data.
    demonstrations_per_prompt = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(20)],
        help_text="Written demonstrations wanted per train prompt: the labeling page's write "
        "mode offers the prompts that have fewer (0: no write mode).",
    )
    answer_edits = models.BooleanField(
        default=True,
        help_text="Annotators may edit an answer on the labeling page: the edit is stored as a "
        "demonstration and as a comparison in which it is preferred to the answer it edits.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Keys the pseudonyms of the people in this project's exports and imports: a key per
    # project, so that the exports of two projects cannot be joined on them, and none derived
    # from SECRET_KEY (public in development). Rotated by project_pseudonym_key_rotate.
    pseudonym_key = models.CharField(max_length=64, default=pseudonym_key_new, editable=False)

    def __str__(self) -> str:
        return self.name

    def pseudonym(self, text: str) -> str:
        return pseudonym_of(key=self.pseudonym_key, text=text)

    def clean(self) -> None:
        """Length control has one switch, and needs the reward stage's packed loop; the
        stages' launch settings are well formed."""
        config = self.training_config
        if isinstance(config, dict) and "launch" in config:
            errors = launch_errors(config["launch"])
            if errors:
                raise ValidationError({"training_config": errors})
        reward = config.get("reward") if isinstance(config, dict) else None
        if not isinstance(reward, dict):
            return  # a malformed training_config is refused when a run starts, naming it
        if "length_control" in reward:
            raise ValidationError(
                {
                    "training_config": "training_config.reward.length_control is not an "
                    "override: use the project setting reward_length_control."
                }
            )
        # only an explicit null turns the packed loop off (the stage's default keeps it)
        if self.reward_length_control and reward.get("max_batch_tokens", 0) is None:
            raise ValidationError(
                {
                    "reward_length_control": "Length control needs Hone's packed reward loop, "
                    "but training_config.reward.max_batch_tokens is null (TRL's RewardTrainer, "
                    "which has no per-pair weights): remove that override or turn length "
                    "control off."
                }
            )


# A project's settings by concern. The admin shows one fieldset per group, the loop page and
# the API edit the promotion gates as one group; a new setting joins exactly one group.
PROJECT_SETTINGS: dict[str, tuple[str, ...]] = {
    "Project": ("slug", "name", "guidelines", "base_model"),
    # How the active policy answers prompts.
    "Generation": ("max_new_tokens", "temperature", "top_p"),
    # How comparisons reach annotators.
    "Labeling": ("labels_per_comparison", "lease_minutes", "rationale_required_for_both_bad"),
    # Gold items, repeats and how votes become training pairs (docs/quality.md).
    "Quality control": (
        "gold_rate",
        "gold_accuracy_threshold",
        "gold_min_labels",
        "repeat_rate",
        "tie_handling",
    ),
    # When an iteration starts, what it hands back to annotators, and when its PPO step refuses
    # a reward model that fresh labels disagree with.
    "Loop": (
        "trigger_new_labels",
        "comparisons_per_iteration",
        "comparison_strategy",
        "judge_share",
        "ppo_min_fresh_agreement",
        "ppo_fresh_min_labels",
    ),
    # What a candidate policy must show before promotion (training/gates.py).
    "Promotion gates": (
        "auto_promote",
        "gate_min_win_rate",
        "gate_max_kl",
        "gate_max_empty_rate",
        "gate_max_repetition",
        "gate_judge_min_win_rate",
        "gate_max_overoptimization",
        "judge_min_pairs",
        "gate_human_min_win_rate",
        "gate_human_labels",
    ),
    # How an iteration trains its candidate, where from, when it first runs SFT, and overrides
    # of the training stages' configs (training/ml), checked when a run starts.
    "Training": (
        "optimizer",
        "restart_from",
        "reward_length_control",
        "sft_min_demonstrations",
        "training_config",
    ),
    # What people write: answers to prompts, and edits of the answers they compare.
    "Demonstrations": ("demonstrations_per_prompt", "answer_edits"),
}
PROJECT_GATE_FIELDS = PROJECT_SETTINGS["Promotion gates"]


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
        ARENA = "arena"  # typed in the arena: never sampled for training or evaluation

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
    """An answer to a prompt: sampled from a policy version, or written by a person (the edit
    of a demonstration, which is compared with the answer it edits; docs/demonstrations.md)."""

    class Kind(models.TextChoices):
        SAMPLED = "sampled", "Sampled from a policy version"
        HUMAN = "human", "Written by a person"

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="completions")
    # No version for a person's answer: it is nobody's sample, and counts for no version.
    policy_version = models.ForeignKey(
        "training.PolicyVersion",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="completions",
    )
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.SAMPLED)
    text = models.TextField()
    sampling = models.JSONField(default=dict, blank=True)
    token_count = models.PositiveIntegerField(default=0)
    finish_reason = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="sampled", policy_version__isnull=False)
                | Q(kind="human", policy_version__isnull=True),
                name="completion_sampled_has_version",
            )
        ]

    def __str__(self) -> str:
        if self.kind == self.Kind.HUMAN:
            return f"Completion {self.pk} by a person"
        return f"Completion {self.pk} of v{self.policy_version_id}"


class Comparison(models.Model):
    class Kind(models.TextChoices):
        REGULAR = "regular"
        GOLD = "gold"
        ARENA = "arena"
        # A person's edit (A) against the answer they edited (B), with their label preferring
        # the edit: made complete, never leased, never a version's game (Demonstration).
        EDIT = "edit"

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
    # Regular (non-repeat) labels stored, kept with each label so that the next-item query
    # reads one row instead of counting.
    label_count = models.PositiveSmallIntegerField(default=0)
    # Labels and unexpired leases fill it until this time: a hint that lets the next-item
    # query step over the row without counting its leases (feedback/labeling/).
    leases_full_until = models.DateTimeField(null=True, blank=True, editable=False)
    # Gold items: the known answer, set by an admin.
    gold_choice = models.CharField(max_length=8, choices=Choice.choices, blank=True)
    # A reviewer's decision; overrides the vote when training data is built.
    final_choice = models.CharField(max_length=8, choices=Choice.choices, blank=True)
    final_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    final_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~Q(completion_a=models.F("completion_b")),
                name="comparison_of_two_completions",
            ),
            models.CheckConstraint(
                condition=~Q(kind="gold") | ~Q(gold_choice=""),
                name="gold_comparison_has_answer",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "status", "-priority", "created_at"]),
            # The assignment queue: open regular items of a project, best first. The next-item
            # query walks it in order and stops at the first few it can lease.
            models.Index(
                fields=["project", "-priority", "created_at", "id"],
                condition=Q(status="open") & ~Q(kind="gold"),
                name="comparison_open_queue",
            ),
        ]

    def __str__(self) -> str:
        return f"Comparison {self.pk}"


class Assignment(models.Model):
    """A lease of one comparison to one annotator, with the side shown left."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        SUBMITTED = "submitted"
        EXPIRED = "expired"
        SKIPPED = "skipped"

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments"
    )
    a_shown_left = models.BooleanField(help_text="Whether completion A was shown on the left.")
    # A consistency repeat: an item the annotator already labelled, back with sides swapped.
    # It never counts towards the comparison's k labels.
    is_repeat = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    skip_reason = models.CharField(
        max_length=200, blank=True, validators=[no_control_characters("reason")]
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            # One regular lease and at most one repeat lease per annotator and comparison. An
            # expired lease is renewed in place when its annotator gets the item back.
            models.UniqueConstraint(
                fields=["comparison", "annotator", "is_repeat"],
                name="one_assignment_per_annotator",
            )
        ]
        indexes = [
            models.Index(fields=["annotator", "status"]),
            models.Index(fields=["comparison", "status", "expires_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.annotator} on comparison {self.comparison_id} ({self.status})"


class PreferenceLabel(models.Model):
    Choice = Choice

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
    rationale = models.TextField(
        blank=True, validators=text_validators("rationale", MAX_RATIONALE_CHARS)
    )
    time_spent_ms = models.PositiveIntegerField(default=0)
    a_shown_left = models.BooleanField()
    is_repeat = models.BooleanField(
        default=False, help_text="A consistency repeat (see Assignment)."
    )
    review_status = models.CharField(
        max_length=10, choices=ReviewStatus.choices, default=ReviewStatus.UNREVIEWED
    )
    withdrawn_at = models.DateTimeField(
        null=True, blank=True, help_text="Set when the annotator undid the label; kept for audit."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # Withdrawn labels stay (audit trail); only one standing label per annotator.
            models.UniqueConstraint(
                fields=["comparison", "annotator", "is_repeat"],
                condition=Q(withdrawn_at__isnull=True),
                name="one_label_per_annotator",
            )
        ]
        indexes = [
            models.Index(fields=["comparison", "review_status"]),
            models.Index(fields=["annotator", "created_at"]),
            # An annotator's regular labels in order: where a consistency repeat is found
            # (feedback/labeling/sql.py, REPEAT_GAP labels back), without sorting all of them.
            models.Index(
                fields=["annotator", "id"],
                condition=Q(is_repeat=False),
                name="label_annotator_regular",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.annotator} on {self.comparison_id}: {self.choice}"


class Audit(models.Model):
    """One change: who, when, what, before, after. Rows are only ever added."""

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    action = models.CharField(max_length=32)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True


class LabelAudit(Audit):
    """Every change to a label."""

    label = models.ForeignKey(PreferenceLabel, on_delete=models.PROTECT, related_name="audits")

    def __str__(self) -> str:
        return f"{self.action} label {self.label_id} by {self.actor}"


class ComparisonAudit(Audit):
    """Every change to a comparison's decision (gold answer, final preference)."""

    comparison = models.ForeignKey(Comparison, on_delete=models.PROTECT, related_name="audits")

    def __str__(self) -> str:
        return f"{self.action} comparison {self.comparison_id} by {self.actor}"


class AuditEvent(models.Model):
    """One change to the loop or to who may act: who (None: the system), when, what, on
    what, and the state before and after. Rows are only ever added (README, "Governance"): the
    admin shows them read-only and, on PostgreSQL, a trigger refuses UPDATE and DELETE.
    People appear in before/after by id only, so erasing one leaves no name here."""

    class Action(models.TextChoices):
        POLICY_PROMOTE = "policy.promote", "Policy promoted"
        POLICY_ROLLBACK = "policy.rollback", "Policy rolled back to"
        ITERATION_START = "iteration.start", "Iteration started"
        ITERATION_CANCEL = "iteration.cancel", "Iteration cancelled"
        ITERATION_APPROVE = "iteration.approve", "Candidate approved"
        ITERATION_REJECT = "iteration.reject", "Candidate rejected"
        GATES_SET = "project.gates", "Promotion gates changed"
        TRAINING_CONFIG_SET = "project.training_config", "Training config changed"
        SETTINGS_SET = "project.settings", "Project settings changed"
        SCHEDULE_SET = "loop.schedule", "Loop schedule changed"
        MEMBERSHIP_SET = "membership.set", "Member added or role changed"
        MEMBERSHIP_REMOVE = "membership.remove", "Member removed"
        PROMPTS_IMPORT = "prompts.import", "Prompts imported"
        LABELS_IMPORT = "labels.import", "Labels imported"
        DEMONSTRATIONS_IMPORT = "demonstrations.import", "Demonstrations imported"
        DATA_EXPORT = "data.export", "Data exported"
        TOKEN_CREATE = "token.create", "API token created"
        TOKEN_DELETE = "token.delete", "API token deleted"
        USER_ERASE = "user.erase", "Person erased"

    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.PROTECT)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    action = models.CharField(max_length=32, choices=Action.choices)
    target_type = models.CharField(max_length=64, help_text='The row changed: "app.model".')
    target_id = models.BigIntegerField(null=True, blank=True)
    before = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    after = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["project", "-at", "-id"]),
            models.Index(fields=["action", "-at"]),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.target_type} {self.target_id} by {self.actor or 'system'}"


class Demonstration(models.Model):
    """An answer a person gives a prompt: supervised fine-tuning data (docs/demonstrations.md).

    Written from scratch (the labeling page's write mode, the API), an edit of one of the two
    answers of a comparison on the labeling page, or imported from a file. An edit is also a
    preference: its text is a `Completion` of kind human (`completion`), compared with the
    answer it edits (`original`) in a comparison of kind edit (`comparison`) that holds the
    annotator's label preferring the edit. `label` is the annotator's label on the comparison
    they were labeling when they edited: undoing it withdraws the edit. Reviewers accept,
    reject or correct a demonstration; every change leaves a DemonstrationAudit row, and the
    text is never changed otherwise.
    """

    class Origin(models.TextChoices):
        WRITTEN = "written", "Written for the prompt"
        EDITED = "edited", "Edited from a model's answer"
        IMPORTED = "imported", "Imported from a file"

    class ReviewStatus(models.TextChoices):
        UNREVIEWED = "unreviewed"
        ACCEPTED = "accepted"
        REJECTED = "rejected"
        # Accepted after a reviewer changed the text (the audit trail keeps each version).
        CORRECTED = "corrected"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="demonstrations")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="demonstrations")
    # None: imported (`source` says from where).
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="demonstrations",
    )
    text = models.TextField(validators=text_validators("demonstration", MAX_DEMONSTRATION_CHARS))
    origin = models.CharField(max_length=8, choices=Origin.choices)
    original = models.ForeignKey(
        Completion, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    completion = models.OneToOneField(
        Completion,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="demonstration",
    )
    comparison = models.OneToOneField(
        Comparison,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="demonstration",
    )
    label = models.OneToOneField(
        PreferenceLabel,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="edit",
    )
    source = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    time_spent_ms = models.PositiveIntegerField(default=0)
    review_status = models.CharField(
        max_length=10, choices=ReviewStatus.choices, default=ReviewStatus.UNREVIEWED
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    withdrawn_at = models.DateTimeField(
        null=True, blank=True, help_text="Set when its author undid the label it came with."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # A person writes one answer per prompt (a retried request returns it).
            models.UniqueConstraint(
                fields=["prompt", "author"],
                condition=Q(origin="written", withdrawn_at__isnull=True),
                name="one_written_demonstration_per_author",
            ),
            models.CheckConstraint(
                condition=Q(
                    origin="edited",
                    original__isnull=False,
                    completion__isnull=False,
                    comparison__isnull=False,
                    label__isnull=False,
                )
                | (
                    ~Q(origin="edited")
                    & Q(
                        original__isnull=True,
                        completion__isnull=True,
                        comparison__isnull=True,
                        label__isnull=True,
                    )
                ),
                name="demonstration_edit_has_its_rows",
            ),
            models.CheckConstraint(
                condition=Q(origin="imported") | Q(author__isnull=False),
                name="demonstration_has_author",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "review_status", "id"]),
            models.Index(fields=["author", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"Demonstration {self.pk} ({self.origin})"


class DemonstrationAudit(Audit):
    """Every change to a demonstration: created, imported, reviewed, corrected, withdrawn."""

    demonstration = models.ForeignKey(
        Demonstration, on_delete=models.PROTECT, related_name="audits"
    )
    # None: imported by a command line without a person.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT
    )

    def __str__(self) -> str:
        return f"{self.action} demonstration {self.demonstration_id} by {self.actor}"


class ComparisonFlag(models.Model):
    """An annotator's report that a comparison should not be labeled as it is."""

    class Reason(models.TextChoices):
        UNSAFE = "unsafe", "Unsafe content"
        BROKEN = "broken", "Broken (empty, garbled, cut off)"
        OTHER = "other", "Other"

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="flags")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    reason = models.CharField(max_length=8, choices=Reason.choices)
    note = models.TextField(blank=True, validators=text_validators("note", MAX_FLAG_NOTE_CHARS))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["comparison", "annotator"], name="one_flag_per_annotator"
            )
        ]

    def __str__(self) -> str:
        return f"{self.annotator} flagged {self.comparison_id}: {self.reason}"


class ArenaBattle(models.Model):
    """One arena round: a typed prompt, two anonymous policy versions, one vote.

    The answers stream to the annotator while the worker generates them; the vote may come
    first. Once both answers are stored and the vote is in, the battle becomes an arena
    `Comparison` with one `PreferenceLabel` (what a version leaderboard counts).
    """

    class Status(models.TextChoices):
        GENERATING = "generating"
        DONE = "done"
        FAILED = "failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="arena_battles")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="arena_battles"
    )
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="+")
    policy_a = models.ForeignKey(
        "training.PolicyVersion", on_delete=models.PROTECT, related_name="+"
    )
    policy_b = models.ForeignKey(
        "training.PolicyVersion", on_delete=models.PROTECT, related_name="+"
    )
    a_shown_left = models.BooleanField()
    completion_a = models.ForeignKey(
        Completion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    completion_b = models.ForeignKey(
        Completion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.GENERATING)
    error = models.TextField(blank=True)
    choice = models.CharField(max_length=8, choices=PreferenceLabel.Choice.choices, blank=True)
    strength = models.PositiveSmallIntegerField(
        choices=PreferenceLabel.Strength.choices, default=PreferenceLabel.Strength.CLEAR
    )
    voted_at = models.DateTimeField(null=True, blank=True)
    time_to_vote_ms = models.PositiveIntegerField(default=0)
    comparison = models.OneToOneField(
        Comparison, null=True, blank=True, on_delete=models.SET_NULL, related_name="arena_battle"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~Q(policy_a=models.F("policy_b")), name="arena_of_two_versions"
            )
        ]
        indexes = [models.Index(fields=["annotator", "created_at"])]

    def __str__(self) -> str:
        return f"Arena battle {self.pk}"
