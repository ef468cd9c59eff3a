"""PPO with LoRA: Hone's own RLHF trainer, one file, readable top to bottom.

Follows "The N Implementation Details of RLHF with PPO" (Huang et al., 2024,
https://arxiv.org/abs/2403.17031) and the structure of TRL 1.12's `PPOTrainer` (deleted from TRL
in 1.13), with choices of our own:

- the policy is the base model plus a LoRA adapter, and the reference policy is the same model
  with the adapter switched off (`disable_adapter()`): no second copy for the reference; or,
  with `reference_adapter` (an SFT adapter), the same model with that adapter loaded frozen
  beside the policy's and switched on for the reference pass (a second LoRA adapter, not a
  second model);
- the value function (`value_model`): "shared" (the default) is a scalar head on the policy's
  last hidden states, the classic shared-trunk PPO: one backbone pass per micro-batch gives
  both the log-probs and the values, and the value loss (weighted by `vf_coef`) trains the
  policy's LoRA too. "separate" is a second LoRA adapter plus a head on a module tree that
  shares the frozen base weights with the policy (one copy of the base weights serves policy,
  reference and value); it starts from the reward model's adapter and head when there is one,
  and costs a second backbone pass per micro-batch, in the rollout and in every PPO epoch.
  "shared" is the default because it measured at 0.57x TRL 1.12's CPU seconds per episode
  (the separate adapter: 0.97x) and 3.4 against 5.3 GB, learning the same as both within noise
  on the demo task (docs/benchmarks.md, "PPO: Hone's trainer and TRL 1.12's"). Its head starts
  at zero (the reward model's head reads the reward adapter's hidden states, not the
  policy's), so while the values are far off the value loss steers the shared LoRA: with large
  returns (a reward of up to 25 in the tiny learning test) it learned less at `vf_coef` 0.1
  and as much as a separate value model at 0.01 (16 seeds each); lower `vf_coef` when scores
  run large;
- answers are sampled by a loop of our own with the KV cache (`sample_answers`), which records
  each sampled token's log-prob at the sampling temperature (and, when shared, its value): the
  old log-probs of PPO's ratio come from sampling, not from a second forward over the answers.
  Each row's tokens come from a generator seeded by (seed, update, row index in the global
  batch), so the answers do not depend on how the rows are split across processes. Caveat: a
  cached, token-by-token forward and a full forward over the whole answer are the same sums in
  another order: they agree to about 1e-6 in float32, less closely in bf16, so PPO's first
  ratio is about 1, not exactly 1 (and a fresh adapter's first KL is about 0, not exactly 0);
- data-parallel runs (`accelerate launch`, `training.ml.job`) whiten the advantages over the
  global batch (sums reduced across processes) and average the metrics over processes, so that
  N processes with rollout_batch_size B/N train as one process with B (up to float rounding,
  with 1-row micro-batches: tested);
- the reward is read through `RewardScorer` (or a plain `reward_fn` in tests) on the decoded
  answer text, so it is read exactly as the reward model was trained to read it.

One update = sample a batch of answers (with their log-probs), score them, the reference's
log-probs, per-token rewards (KL penalty to the reference everywhere, score at the last token),
advantages by GAE, then a few epochs of clipped policy and value losses over minibatches.

    python -m training.ml.ppo --base var/models/tiny --prompts prompts.jsonl \\
        --reward-model var/reward/3 --out var/policy/4 --total-episodes 256
    accelerate launch -m training.ml.ppo ...   # several processes: each samples its share

Importing this module imports torch (the policy/value module is an nn.Module); transformers,
peft and accelerate are imported when training starts.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import hashlib
import itertools
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.ml.data import PromptInput, add_config_arguments, config_from_arguments, load_prompts
from training.ml.errors import ModelNotFound
from training.ml.loading import check_load_in_4bit, check_reference_adapter

RewardFn = Callable[[list[PromptInput], list[str]], list[float]]
MetricsFn = Callable[[dict[str, Any]], None]

METRICS_FILE = "metrics.jsonl"
POLICY_FILE = "hone_policy.json"
VALUE_MODELS = ("shared", "separate")


@dataclass
class PPOConfig:
    """Everything a PPO run needs besides its data; `validate()` checks the invariants."""

    base_model: str = field(default="", metadata={"help": "base model folder (or hub id)"})
    reward_model: str | None = field(
        default=None,
        metadata={"help": "reward model folder made by training.ml.reward (or pass reward_fn)"},
    )
    init_adapter: str | None = field(
        default=None,
        metadata={
            "help": "LoRA adapter folder to continue training (the reference stays the base "
            "unless reference_adapter is set)"
        },
    )
    reference_adapter: str | None = field(
        default=None,
        metadata={
            "help": "LoRA adapter folder of the KL reference (an SFT adapter), loaded frozen "
            "beside the policy's; unset: the base model with the adapter off"
        },
    )
    total_episodes: int = field(
        default=256, metadata={"help": "answers sampled in the whole run, all processes together"}
    )
    rollout_batch_size: int = field(
        default=8, metadata={"help": "answers sampled per update, per process"}
    )
    num_mini_batches: int = field(
        default=1, metadata={"help": "minibatches (optimizer steps) per PPO epoch"}
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "micro-batches accumulated into one optimizer step"}
    )
    num_ppo_epochs: int = field(default=4, metadata={"help": "passes over each rollout batch"})
    learning_rate: float = field(default=5e-5, metadata={"help": "AdamW learning rate"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm"})
    max_prompt_tokens: int = field(
        default=256, metadata={"help": "longer prompts are cut from the left (and counted)"}
    )
    response_length: int = field(default=64, metadata={"help": "max new tokens per answer"})
    temperature: float = field(
        default=0.7, metadata={"help": "sampling temperature (log-probs use the same one)"}
    )
    missing_eos_penalty: float = field(
        default=1.0,
        metadata={"help": "subtracted from the score of an answer that never ends (0: off)"},
    )
    kl_coef: float = field(
        default=0.05, metadata={"help": "KL penalty coefficient (the initial one when adaptive)"}
    )
    kl_target: float | None = field(
        default=None,
        metadata={"help": "target KL per answer: adapts kl_coef (Ziegler et al.); unset: fixed"},
    )
    kl_horizon: int = field(
        default=10000, metadata={"help": "episodes over which the adaptive coefficient reacts"}
    )
    gamma: float = field(default=1.0, metadata={"help": "discount factor"})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda"})
    cliprange: float = field(default=0.2, metadata={"help": "policy ratio clip range"})
    cliprange_value: float = field(default=0.2, metadata={"help": "value prediction clip range"})
    vf_coef: float = field(default=0.1, metadata={"help": "value loss weight"})
    value_model: str = field(
        default="shared",
        metadata={
            "help": "shared: a value head on the policy's hidden states (one backbone pass, the "
            "value loss trains the policy's LoRA too); separate: a value adapter of its own "
            "(started from the reward model's), a second backbone pass"
        },
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank of a new policy/value adapter"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha of a new adapter"})
    bf16: bool = field(default=True, metadata={"help": "bf16 weights and autocast (CUDA only)"})
    seed: int = field(default=0, metadata={"help": "random seed (same seed, same run on CPU)"})
    load_in_4bit: bool = field(
        default=False,
        metadata={"help": "QLoRA: the base model in 4-bit NF4 (CUDA and bitsandbytes only)"},
    )

    def validate(self) -> None:
        """Raise ValueError naming the first field that breaks an invariant."""
        if not self.base_model:
            raise ValueError("PPOConfig.base_model is required")
        check_load_in_4bit(self.load_in_4bit)
        for name in (
            "total_episodes",
            "rollout_batch_size",
            "num_mini_batches",
            "gradient_accumulation_steps",
            "num_ppo_epochs",
            "max_prompt_tokens",
            "response_length",
            "kl_horizon",
            "lora_r",
            "lora_alpha",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"PPOConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in (
            "learning_rate",
            "max_grad_norm",
            "temperature",
            "cliprange",
            "cliprange_value",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"PPOConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("missing_eos_penalty", "kl_coef", "vf_coef"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"PPOConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("gamma", "lam"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"PPOConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        check_reference_adapter("PPOConfig", self.init_adapter, self.reference_adapter)
        if self.value_model not in VALUE_MODELS:
            raise ValueError(
                f"PPOConfig.value_model must be one of {', '.join(VALUE_MODELS)}, "
                f"got {self.value_model!r}"
            )
        if self.kl_target is not None and not self.kl_target > 0:
            raise ValueError(f"PPOConfig.kl_target must be > 0 when set, got {self.kl_target}")
        steps = self.num_mini_batches * self.gradient_accumulation_steps
        if self.rollout_batch_size % steps:
            raise ValueError(
                f"PPOConfig.rollout_batch_size ({self.rollout_batch_size}) must be a multiple of "
                f"num_mini_batches * gradient_accumulation_steps ({steps})"
            )

    @property
    def micro_batch_size(self) -> int:
        """Answers per forward/backward pass."""
        return self.rollout_batch_size // (self.num_mini_batches * self.gradient_accumulation_steps)


# ---------------------------------------------------------------------------------------------
# PPO arithmetic: small functions on (B, T) tensors, T = answer tokens
# ---------------------------------------------------------------------------------------------


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(
    values: torch.Tensor,
    mask: torch.Tensor,
    total: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Zero mean, unit variance over the unmasked entries; masked entries become 0.

    `total` sums a scalar over processes (data-parallel: the mean and the variance are those of
    the global batch, not of this process's share); None: this batch alone.
    """
    if total is None:
        total = lambda t: t  # noqa: E731
    count = total(mask.sum()).clamp(min=1)
    mean = total((values * mask).sum()) / count
    var = total(((values - mean) ** 2 * mask).sum()) / count
    return (values - mean) * torch.rsqrt(var + 1e-8) * mask


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(token) under logits: (B, T, V), (B, T) -> (B, T)."""
    logits = logits.float()
    picked = torch.gather(logits, -1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al., 2016, https://arxiv.org/abs/1506.02438).

    Positions past an answer's end have mask 0: their value counts as 0, so the last real
    token bootstraps from 0. Returns (advantages, returns), both (B, T).
    """
    values, rewards = values * mask, rewards * mask
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        next_value = values[:, t + 1] if t + 1 < values.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    return advantages * mask, (advantages + values) * mask


class AdaptiveKLController:
    """Ziegler et al. (2019, https://arxiv.org/abs/1909.08593) section 2.2: move the KL
    coefficient so that the KL per answer tracks `target`; a fixed coefficient when None."""

    def __init__(self, init: float, target: float | None, horizon: int) -> None:
        self.value = init
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_episodes: int) -> None:
        if self.target is None:
            return
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_episodes / self.horizon


# ---------------------------------------------------------------------------------------------
# Models: policy (LoRA), reference (the same, adapter off), value (LoRA + head, shared base)
# ---------------------------------------------------------------------------------------------


REFERENCE = "reference"  # the peft adapter name of `reference_adapter`


class PolicyAndValue(nn.Module):
    """Policy and value model as one module, so that `accelerator.prepare` wraps both (DDP)
    and one forward trains both (the layout of TRL's and MOSS-RLHF's PPO).

    `value_model="shared"`: `value_head` reads the policy's last hidden states (`value` is
    None); "separate": `value` is a sequence classifier with its own LoRA (`value_head` None).
    """

    def __init__(
        self,
        policy: nn.Module,
        value: nn.Module | None = None,
        value_head: nn.Linear | None = None,
    ) -> None:
        super().__init__()
        if (value is None) == (value_head is None):
            raise ValueError("PolicyAndValue needs exactly one of value and value_head")
        self.policy = policy  # peft: causal LM + LoRA
        self.value = value  # separate: sequence-classification model + LoRA + `score` head
        self.value_head = value_head  # shared: Linear(hidden, 1) on the policy's hidden states

    @property
    def shared(self) -> bool:
        return self.value_head is not None

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, context_length: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits that predict each answer token (B, R, V), values (B, R)): one backbone pass
        when shared, two when separate."""
        if not self.shared:
            return (
                self.policy_logits(input_ids, attention_mask, context_length),
                self.values(input_ids, attention_mask, context_length),
            )
        out = self._policy_forward(input_ids, attention_mask, context_length, hidden=True)
        hidden = out.hidden_states[-1][:, context_length - 1 : -1]  # (B, R, H), final norm in
        return out.logits[:, :-1], self.head_values(hidden)

    def head_values(self, hidden: torch.Tensor) -> torch.Tensor:
        """The shared value head on last hidden states: (..., H) -> (...), float32."""
        assert self.value_head is not None
        return self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1).float()

    def policy_logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, context_length: int
    ) -> torch.Tensor:
        """Logits that predict each answer token: (B, P+R) ids -> (B, R, V)."""
        return self._policy_forward(input_ids, attention_mask, context_length).logits[:, :-1]

    def _policy_forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        context_length: int,
        *,
        hidden: bool = False,
    ) -> Any:
        answer_length = input_ids.shape[1] - context_length
        return self.policy(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=_position_ids(attention_mask),
            logits_to_keep=answer_length + 1,  # (B, R+1, V) instead of (B, P+R, V)
            output_hidden_states=hidden,
            use_cache=False,
        )

    @contextlib.contextmanager
    def as_reference(self) -> Iterator[None]:
        """Inside the block the policy module computes the reference: the frozen reference
        adapter when there is one (peft's `set_adapter`, frozen, then the policy's adapter
        again, trainable as before), else the base model with the adapter off."""
        if REFERENCE not in self.policy.peft_config:
            with self.policy.disable_adapter():
                yield
            return
        self.policy.set_adapter(REFERENCE, inference_mode=True)
        try:
            yield
        finally:
            self.policy.set_adapter("default")

    def values(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, context_length: int
    ) -> torch.Tensor:
        """Value of each state that precedes an answer token: (B, P+R) ids -> (B, R)."""
        if self.shared:
            return self(input_ids, attention_mask, context_length)[1]
        assert self.value is not None
        classifier = self.value.base_model.model  # under peft's wrappers
        backbone = getattr(classifier, classifier.base_model_prefix)
        hidden = backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=_position_ids(attention_mask),
            use_cache=False,
        ).last_hidden_state[:, context_length - 1 : -1]  # (B, R, H)
        return classifier.score(hidden).squeeze(-1).float()


@torch.no_grad()
def sample_answers(
    model: PolicyAndValue,
    queries: torch.Tensor,
    query_mask: torch.Tensor,
    generators: list[torch.Generator],
    *,
    max_new_tokens: int,
    temperature: float,
    stop_ids: torch.Tensor,
    pad_id: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Sample answers from the policy with the KV cache; row i draws from `generators[i]`.

    Left-padded prompts (B, P) -> (tokens (B, R), log-probs (B, R), values (B, R) or None).
    Each token is a Gumbel-max draw from softmax(logits / temperature) with noise from its
    row's own generator, so a row's answer depends on its prompt and its generator only, not on
    the other rows of the batch. Its log-prob is taken under that same distribution; values
    come from the shared head on the same hidden states (None for a separate value model). A
    row that drew a stop token gets `pad_id` after it (log-prob and value 0 there); the loop
    ends when every row has stopped or after `max_new_tokens`: R <= max_new_tokens.
    """
    batch = queries.shape[0]
    device = queries.device
    ended = torch.zeros(batch, dtype=torch.bool, device=device)
    attention_mask = query_mask
    position_ids = _position_ids(query_mask)
    input_ids, past = queries, None
    tokens, logprobs, values = [], [], []
    for _ in range(max_new_tokens):
        out = model.policy(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past,
            use_cache=True,
            logits_to_keep=1,
            output_hidden_states=model.shared,
        )
        past = out.past_key_values
        logp = torch.log_softmax(out.logits[:, -1].float() / temperature, dim=-1)  # (B, V)
        uniform = torch.stack(
            [torch.rand(logp.shape[1], generator=g, device=device) for g in generators]
        )
        gumbel = -torch.log(-torch.log(uniform))  # u = 0 gives -inf: never drawn
        token = (logp + gumbel).argmax(-1)
        picked = logp.gather(1, token.unsqueeze(1)).squeeze(1)
        tokens.append(token.masked_fill(ended, pad_id))
        logprobs.append(picked.masked_fill(ended, 0.0))
        if model.shared:
            values.append(model.head_values(out.hidden_states[-1][:, -1]).masked_fill(ended, 0.0))
        ended = ended | torch.isin(token, stop_ids)
        if bool(ended.all()):
            break
        input_ids = tokens[-1].unsqueeze(1)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((batch, 1))], 1)
        position_ids = position_ids[:, -1:] + 1
    return (
        torch.stack(tokens, 1),
        torch.stack(logprobs, 1),
        torch.stack(values, 1) if values else None,
    )


def row_generator(seed: int, update: int, row: int, device: Any = "cpu") -> torch.Generator:
    """The sampling generator of one answer: row `row` of the global batch of update `update`
    (the same on every process, whatever the split)."""
    digest = hashlib.sha256(f"hone-ppo:{seed}:{update}:{row}".encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    # Left padding: a prompt's first real token is position 0 whatever its padding.
    return (attention_mask.cumsum(1) - 1).clamp(min=0)


def build_policy_and_value(
    config: PPOConfig, *, device: Any = None, dtype: torch.dtype | None = None
) -> tuple[PolicyAndValue, Any]:
    """Load the base once and build (PolicyAndValue, tokenizer) on it.

    Memory: ONE copy of the frozen base weights. The policy is base + LoRA; the reference is
    the policy with its adapter disabled, or with `reference_adapter` active instead of its
    own (a frozen LoRA adapter beside the policy's, `as_reference`). The value model is a
    head on the policy's last hidden states (`value_model="shared"`), or a second module tree
    whose frozen tensors ARE the policy's (`copy.deepcopy` with those tensors pre-seeded in the
    memo), with its own LoRA and a `score` head ("separate"). Only LoRA weights and the head
    are trainable. The reward model, when there is one, is held separately by `RewardScorer`.
    """
    from transformers import AutoModelForSequenceClassification

    from training.ml.loading import LoraSettings, attach_lora, load_adapter, load_causal_lm

    base, tokenizer = load_causal_lm(
        config.base_model, device=device, dtype=dtype, load_in_4bit=config.load_in_4bit
    )
    base.requires_grad_(False)
    lora = LoraSettings(r=config.lora_r, alpha=config.lora_alpha, dropout=0.0)

    # ---- value: a head on the policy's hidden states, or a classifier of its own ----
    value, value_head = None, None
    if config.value_model == "shared":
        value_head = nn.Linear(base.config.hidden_size, 1, bias=False, device=device)
        nn.init.zeros_(value_head.weight)  # a fresh head predicts 0; kept in float32
    else:
        # a sequence classifier around a weight-sharing copy of the backbone
        backbone = getattr(base, base.base_model_prefix)
        shared = {id(t): t for t in itertools.chain(backbone.parameters(), backbone.buffers())}
        value_backbone = copy.deepcopy(backbone, memo=shared)  # new modules, same tensors
        value_config = copy.deepcopy(base.config)
        value_config.num_labels = 1
        with torch.device("meta"):  # the classifier's skeleton, allocating no second base
            classifier = AutoModelForSequenceClassification.from_config(value_config)
        setattr(classifier, classifier.base_model_prefix, value_backbone)
        classifier.score = nn.Linear(value_config.hidden_size, 1, bias=False, device=device)
        nn.init.zeros_(classifier.score.weight)  # a fresh head predicts 0; kept in float32
        classifier.requires_grad_(False)
        unallocated = [name for name, t in classifier.state_dict().items() if t.is_meta]
        assert not unallocated, f"value model parts left on the meta device: {unallocated}"
        if config.reward_model:
            # Start the value function from the reward model (adapter + score head): it already
            # judges whole answers (N implementation details, "value model initialization").
            value = load_adapter(classifier, config.reward_model, trainable=True)
        else:
            value = attach_lora(classifier, lora, task_type="SEQ_CLS")

    # ---- policy: base + LoRA (a new adapter, or the one we continue from) ----
    if config.init_adapter:
        policy = load_adapter(base, config.init_adapter, trainable=True)
    else:
        policy = attach_lora(base, lora)
    # ---- reference: the base (adapter off), or a frozen second adapter on the same base ----
    if config.reference_adapter:
        policy.load_adapter(config.reference_adapter, adapter_name=REFERENCE, is_trainable=False)

    model = PolicyAndValue(policy, value, value_head)
    # Sampling and training must compute the same function (PPO's first ratio about 1): no
    # dropout anywhere (also in adapters trained with dropout, like an SFT or reward adapter).
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model, tokenizer


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def train_ppo(
    config: PPOConfig,
    prompts_path: str | Path,
    out_dir: str | Path,
    *,
    reward_fn: RewardFn | None = None,
    on_metrics: MetricsFn | None = None,
) -> dict[str, Any]:
    """Train a LoRA policy with PPO on the prompts in `prompts_path` (JSONL `{"prompt": ...}`).

    The reward is `config.reward_model` (a folder from `training.ml.reward`) or
    `reward_fn(prompts, answers) -> scores`. Writes to `out_dir` (absent or empty): the LoRA
    adapter and the tokenizer, `metrics.jsonl` (one line per update: the dicts also sent to
    `on_metrics` as they come) and `hone_policy.json`. The folder is built aside and renamed
    into place at the end, so a failed run leaves nothing. Returns a summary: mean score at the
    first and the last update, final KL, episodes, seconds.

    Bad input (config, prompts file, model folders) raises a ValueError subclass naming the
    field, file and line, or path, before any model is loaded.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from training.ml.generate import _stop_token_ids, decode
    from training.ml.loading import check_adapter_path, check_model_path, encode_prompt
    from training.ml.reward import RewardScorer, read_reward_info

    # ---- 0. check everything before touching out_dir ----
    config.validate()
    if (config.reward_model is None) == (reward_fn is None):
        raise ValueError("give exactly one of PPOConfig.reward_model and reward_fn")
    prompts = load_prompts(prompts_path)
    check_model_path(config.base_model)
    for adapter in (config.init_adapter, config.reference_adapter):
        if adapter is not None:
            check_adapter_path(adapter)
    if config.reward_model is not None:
        if not (Path(config.reward_model) / "adapter_config.json").is_file():
            raise ModelNotFound(config.reward_model, "reward model")
        read_reward_info(config.reward_model)  # a Hone reward folder, in a format we read
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"output folder is not empty: {out}")

    use_bf16 = config.bf16 and torch.cuda.is_available()
    accelerator = Accelerator(
        mixed_precision="bf16" if use_bf16 else "no",
        gradient_accumulation_steps=config.gradient_accumulation_steps,
    )
    device = accelerator.device
    set_seed(config.seed)  # the same LoRA init on every process
    model, tokenizer = build_policy_and_value(
        config, device=device, dtype=torch.bfloat16 if use_bf16 else torch.float32
    )
    if reward_fn is None:
        reward_fn = RewardScorer.load(config.base_model, config.reward_model, device=device).score
    pad_id = tokenizer.pad_token_id
    stop_ids = torch.tensor(sorted(_stop_token_ids(model.policy, tokenizer)), device=device)

    # ---- prompts: rendered as every stage renders them, cut from the left ----
    prompt_ids, truncated = [], 0
    for prompt in prompts:
        ids = encode_prompt(tokenizer, prompt)
        truncated += len(ids) > config.max_prompt_tokens
        prompt_ids.append(ids[-config.max_prompt_tokens :])

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, eps=1e-5)  # eps: N details
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped: PolicyAndValue = accelerator.unwrap_model(model)
    # The prompt order is the same on all processes (one seeded generator) and each takes its
    # slice of the global batch; each answer is sampled from a generator of its own, seeded by
    # its row in the global batch (`row_generator`). The global generator, seeded per process,
    # only shuffles the micro-batches of the PPO epochs.
    set_seed(config.seed + accelerator.process_index * 100003)
    prompt_order = torch.Generator().manual_seed(config.seed)

    kl_ctl = AdaptiveKLController(config.kl_coef, config.kl_target, config.kl_horizon)
    global_batch = config.rollout_batch_size * accelerator.num_processes
    num_updates = math.ceil(config.total_episodes / global_batch)
    micro = config.micro_batch_size
    queue: list[int] = []
    # this process's rows of every global batch
    rows_here = list(range(accelerator.process_index, global_batch, accelerator.num_processes))

    history: list[dict[str, Any]] = []
    start = time.time()

    def mean(t: torch.Tensor) -> float:  # a metric: the mean here, averaged over processes
        return accelerator.reduce(t.float().mean(), reduction="mean").item()

    def total(t: torch.Tensor) -> torch.Tensor:  # a sum over processes
        return accelerator.reduce(t.float(), reduction="sum")

    for update in range(1, num_updates + 1):
        # ---- 1. prompts: this process's slice of the next global batch ----
        while len(queue) < global_batch:
            queue += torch.randperm(len(prompt_ids), generator=prompt_order).tolist()
        global_prompts = queue[:global_batch]
        del queue[:global_batch]
        batch = [global_prompts[row] for row in rows_here]
        # Padded to the longest prompt of the global batch: every process, whatever its share,
        # computes on sequences of the same shape.
        width = max(len(prompt_ids[i]) for i in global_prompts)
        queries, query_mask = _left_pad([prompt_ids[i] for i in batch], pad_id, device, width)
        context_length = queries.shape[1]  # P
        B = len(batch)  # noqa: N806

        with torch.no_grad():
            # ---- 2. rollouts: sample answers from the policy, with their log-probs ----
            generators = [row_generator(config.seed, update, row, device) for row in rows_here]
            with accelerator.autocast():
                responses, logprobs, values = sample_answers(
                    unwrapped,
                    queries,
                    query_mask,
                    generators,
                    max_new_tokens=config.response_length,
                    temperature=config.temperature,
                    stop_ids=stop_ids,
                    pad_id=pad_id,
                )  # (B, R): R <= response_length (sampling stops when every row has ended)
            # The same R on every process: the longest answer of the global batch.
            longest = int(
                accelerator.gather(torch.tensor([responses.shape[1]], device=device)).max()
            )
            extra = longest - responses.shape[1]
            responses = nn.functional.pad(responses, (0, extra), value=pad_id)
            logprobs = nn.functional.pad(logprobs, (0, extra))
            if values is not None:
                values = nn.functional.pad(values, (0, extra))

            # ---- 3. truncate at the first stop token (kept: it is the answer's last token) ----
            is_stop = torch.isin(responses, stop_ids)
            ended = is_stop.any(1)  # (B,)
            last = torch.where(ended, is_stop.int().argmax(1), responses.shape[1] - 1)  # (B,)
            positions = torch.arange(responses.shape[1], device=device)
            mask = (positions.unsqueeze(0) <= last.unsqueeze(1)).float()  # (B, R)
            responses = responses.masked_fill(mask == 0, pad_id)
            query_responses = torch.cat([queries, responses], 1)
            # Tokens after the end sit after everything that matters (causal attention).
            attention_mask = torch.cat([query_mask, torch.ones_like(responses)], 1)

            # ---- 4. the reference's log-probs (and a separate value model's values) ----
            ref_logprobs, separate_values = [], []
            for i in range(0, B, micro):
                rows = slice(i, i + micro)
                with accelerator.autocast():
                    with unwrapped.as_reference():  # base (adapter off) or reference adapter
                        ref_logits = unwrapped.policy_logits(
                            query_responses[rows], attention_mask[rows], context_length
                        )
                    if not unwrapped.shared:
                        separate_values.append(
                            unwrapped.values(
                                query_responses[rows], attention_mask[rows], context_length
                            )
                        )
                ref_logprobs.append(
                    token_logprobs(ref_logits / config.temperature, responses[rows])
                )
                del ref_logits
            logprobs = logprobs * mask  # (B, R), from sampling
            ref_logprobs = torch.cat(ref_logprobs) * mask
            values = (values if values is not None else torch.cat(separate_values)) * mask

            # ---- 5. score the answer texts (stop token excluded, as generation returns them) ----
            texts = [
                decode(tokenizer, row[: n + 1 - e])
                for row, n, e in zip(
                    responses.tolist(), last.tolist(), ended.int().tolist(), strict=True
                )
            ]
            scores = _score(reward_fn, [prompts[i] for i in batch], texts, device)  # (B,)
            # An answer that runs out of tokens never ended: penalise it (N details, "EOS trick").
            scores = scores - config.missing_eos_penalty * (~ended).float()

            # ---- 6. per-token rewards: KL penalty on every token, the score on the last ----
            kl = (logprobs - ref_logprobs) * mask  # k1 estimator, (B, R)
            non_score_reward = -kl_ctl.value * kl
            rewards = non_score_reward.clone()
            rewards[torch.arange(B, device=device), last] += scores

            # ---- 7. advantages (GAE, whitened over the global batch) and returns ----
            advantages, returns = gae(rewards, values, mask, config.gamma, config.lam)
            advantages = masked_whiten(advantages, mask, total)

        # ---- 8. PPO epochs: shuffled micro-batches, one optimizer step per minibatch ----
        stats: dict[str, list[torch.Tensor]] = {}
        for _epoch in range(config.num_ppo_epochs):
            perm = torch.randperm(B, device=device)
            for i in range(0, B, micro):
                rows = perm[i : i + micro]
                m = mask[rows]
                with accelerator.accumulate(model):
                    new_logits, vpred = model(
                        query_responses[rows], attention_mask[rows], context_length
                    )
                    new_logits = new_logits.float() / config.temperature
                    new_logprobs = token_logprobs(new_logits, responses[rows])
                    log_ratio = (new_logprobs - logprobs[rows]) * m
                    ratio = torch.exp(log_ratio)
                    # clipped surrogate (Schulman et al., 2017, https://arxiv.org/abs/1707.06347)
                    pg_losses = -advantages[rows] * ratio
                    pg_losses2 = -advantages[rows] * ratio.clamp(
                        1 - config.cliprange, 1 + config.cliprange
                    )
                    pg_loss = masked_mean(torch.max(pg_losses, pg_losses2), m)
                    # clipped value loss (N details: value clipping, as in OpenAI's baselines)
                    old_values, target = values[rows], returns[rows]
                    vpred_clipped = old_values + (vpred - old_values).clamp(
                        -config.cliprange_value, config.cliprange_value
                    )
                    vf_losses = torch.max((vpred - target) ** 2, (vpred_clipped - target) ** 2)
                    vf_loss = 0.5 * masked_mean(vf_losses, m)
                    loss = pg_loss + config.vf_coef * vf_loss
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
                    optimizer.step()  # skipped by accelerate until the last micro-batch
                    optimizer.zero_grad()
                with torch.no_grad():
                    probs = torch.softmax(new_logits, -1)
                    entropy = torch.logsumexp(new_logits, -1) - (probs * new_logits).sum(-1)
                    vf_clipped = ((vpred_clipped - target) ** 2 > (vpred - target) ** 2).float()
                    for name, x in (
                        ("approxkl", 0.5 * masked_mean(log_ratio**2, m)),
                        ("clipfrac", masked_mean((pg_losses2 > pg_losses).float(), m)),
                        ("entropy", masked_mean(entropy, m)),
                        ("pg_loss", pg_loss),
                        ("vf_loss", vf_loss),
                        ("vf_clipfrac", masked_mean(vf_clipped, m)),
                        ("ratio", masked_mean(ratio, m)),
                    ):
                        stats.setdefault(name, []).append(x.detach())
                del new_logits, probs, entropy

        # ---- 9. metrics (averaged over processes), then the KL controller ----
        mean_kl = mean(kl.sum(1))
        metrics = {
            "step": update,
            "episode": update * global_batch,
            "objective/kl": mean_kl,
            "objective/kl_coef": kl_ctl.value,
            "objective/entropy": mean(-logprobs.sum(1)),
            "objective/non_score_reward": mean(non_score_reward.sum(1)),
            "objective/scores": mean(scores),
            "objective/rlhf_reward": mean(scores + non_score_reward.sum(1)),
            "policy/approxkl": mean(torch.stack(stats["approxkl"])),
            "policy/clipfrac": mean(torch.stack(stats["clipfrac"])),
            "policy/entropy": mean(torch.stack(stats["entropy"])),
            "loss/policy": mean(torch.stack(stats["pg_loss"])),
            "loss/value": mean(torch.stack(stats["vf_loss"])),
            "val/clipfrac": mean(torch.stack(stats["vf_clipfrac"])),
            "val/ratio": mean(torch.stack(stats["ratio"])),
            "val/num_eos_tokens": int(accelerator.reduce(ended.sum(), reduction="sum").item()),
            "val/response_length": mean(mask.sum(1)),
        }
        kl_ctl.update(mean_kl, global_batch)
        elapsed = time.time() - start
        metrics["elapsed_seconds"] = round(elapsed, 3)
        metrics["eps"] = round(metrics["episode"] / elapsed, 3)
        history.append(metrics)
        if accelerator.is_main_process and on_metrics is not None:
            on_metrics(dict(metrics))

    # ---- 10. save: adapter, tokenizer, metrics, hone_policy.json; built aside, then renamed ----
    summary = {
        "score_before": history[0]["objective/scores"],
        "score_after": history[-1]["objective/scores"],
        "kl": history[-1]["objective/kl"],
        "kl_coef": kl_ctl.value,
        "episodes": history[-1]["episode"],
        "updates": len(history),
        "seconds": round(time.time() - start, 3),
        "prompts_truncated": truncated,
    }
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            unwrapped.policy.save_pretrained(work, selected_adapters=["default"])
            tokenizer.save_pretrained(work)
            with (work / METRICS_FILE).open("w", encoding="utf-8") as f:
                f.writelines(json.dumps(m) + "\n" for m in history)
            record = {
                "kind": "ppo",
                "base_model": config.base_model,
                "init_adapter": config.init_adapter,
                "reference_adapter": config.reference_adapter,
                "reward_model": config.reward_model,
                "config": dataclasses.asdict(config),
                "summary": summary,
            }
            (work / POLICY_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            if out.exists():
                out.rmdir()  # empty, checked before training
            os.replace(work, out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    accelerator.wait_for_everyone()
    return summary


def _left_pad(
    rows: list[list[int]], pad_id: int, device: Any, width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> left-padded (ids, attention_mask), both (B, P); P = `width` or the
    longest row."""
    width = max(len(r) for r in rows) if width is None else width
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
        attention_mask[i, width - len(r) :] = 1
    return ids.to(device), attention_mask.to(device)


def _score(
    reward_fn: RewardFn, prompts: list[PromptInput], texts: list[str], device: Any
) -> torch.Tensor:
    scores = [float(s) for s in reward_fn(prompts, texts)]
    if len(scores) != len(texts) or not all(math.isfinite(s) for s in scores):
        raise ValueError(
            f"the reward gave {len(scores)} scores for {len(texts)} answers "
            "(one finite number per answer is required)"
        )
    return torch.tensor(scores, dtype=torch.float32, device=device)


# ---------------------------------------------------------------------------------------------
# Command line: one flag per PPOConfig field; metrics as JSON lines on stdout
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    from accelerate import PartialState
    from tqdm import tqdm

    parser = argparse.ArgumentParser(
        prog="python -m training.ml.ppo",
        description="PPO with LoRA on a base model; metrics as JSON lines on stdout.",
    )
    parser.add_argument(
        "--prompts", required=True, help="prompts JSONL, one {'prompt': ...} a line"
    )
    parser.add_argument("--out", required=True, help="output folder for the adapter")
    add_config_arguments(parser, PPOConfig, renames={"base_model": "base"})
    args = parser.parse_args(argv)
    config = config_from_arguments(PPOConfig, args)
    bars: list[tqdm] = []  # made on the first report: only the main process gets reports

    def on_metrics(metrics: dict[str, Any]) -> None:
        if not bars:
            bars.append(tqdm(total=config.total_episodes, unit="ep", file=sys.stderr, disable=None))
        bars[0].update(min(metrics["episode"], bars[0].total) - bars[0].n)
        bars[0].set_postfix(
            score=f"{metrics['objective/scores']:.3f}", kl=f"{metrics['objective/kl']:.3f}"
        )
        print(json.dumps(metrics), flush=True)

    try:
        summary = train_ppo(config, args.prompts, args.out, on_metrics=on_metrics)
    except ValueError as exc:  # bad input: one clear line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        for bar in bars:
            bar.close()
    # Under `accelerate launch` every process runs this; the summary is printed once.
    if PartialState().is_main_process:
        print(json.dumps({"summary": summary}), flush=True)


if __name__ == "__main__":
    main()
