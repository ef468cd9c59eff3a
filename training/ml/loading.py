"""Loading base models, tokenizers and LoRA adapters the same way in every stage.

Rules applied here once, so that generate, reward, PPO and evaluate agree:

- pad token = `<|endoftext|>` when the vocabulary has it (SmolLM2 ships `<|im_end|>` as both pad
  and eos, and `<|im_end|>` is inside every chat prompt), in the tokenizer AND in
  `model.config.pad_token_id` (a sequence-classification head finds the last real token
  through it). Callers choose the padding side (left for generation).
- device: CUDA when available, else CPU; dtype: bf16 on a CUDA device that supports it,
  float32 otherwise.
- prompts are rendered to text by one function, `render_prompt`, everywhere.
- every base model is read by one function, `load_pretrained` (4-bit QLoRA included).
- data parallel: a stage's `batch_size` is global, divided among the processes
  (`check_global_batch`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.ml.data import PromptInput
from training.ml.errors import ModelNotFound

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

PAD_TOKEN = "<|endoftext|>"
ADAPTER_CONFIG = "adapter_config.json"


# ---- paths ----


def check_model_path(path: str | Path) -> str:
    """Return `path` as a string if it is a local model folder or looks like a hub id.

    A local path that does not exist, or has no config.json, raises ModelNotFound naming it.
    A hub id ("org/name") that is not a local folder is passed on; from_pretrained then reads
    it from the local cache (nothing is downloaded on these machines).
    """
    p = Path(path)
    looks_local = p.exists() or p.is_absolute() or str(path).startswith(".")
    looks_like_hub_id = str(path).count("/") == 1 and not looks_local
    if not looks_like_hub_id and not (p / "config.json").is_file():
        raise ModelNotFound(path, "model")
    return str(path)


def check_adapter_path(path: str | Path) -> str:
    """Return `path` as a string if it is a folder saved by peft; ModelNotFound otherwise."""
    if not (Path(path) / ADAPTER_CONFIG).is_file():
        raise ModelNotFound(path, "adapter")
    return str(path)


# ---- device and dtype ----


def pick_device(device: str | None = None) -> torch.device:
    """The device to run on: the one asked for, else CUDA when available, else CPU."""
    import torch

    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """bf16 on a CUDA device that supports it, float32 otherwise (CPU bf16 is slow here)."""
    import torch

    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if dtype is not None:
        return dtype
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


# ---- processes: data parallel ----


def process_count() -> int:
    """How many processes train together: 1 alone, N under `accelerate launch` (one per GPU,
    or CPU processes that talk over gloo)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available()).num_processes


def check_global_batch(batch_size: int, processes: int) -> None:
    """A stage's `batch_size` is the global batch: N processes take batch_size / N each, so
    that they train as one process does with batch_size. ValueError unless it divides."""
    if batch_size % processes:
        raise ValueError(
            f"batch_size is the global batch, shared by the {processes} processes: it must be "
            f"a multiple of {processes}, got {batch_size}"
        )


# ---- tokenizer ----


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """Load a tokenizer and apply the pad rule (see module docstring).

    When the vocabulary has no `<|endoftext|>` and no pad token, eos is used as pad (and a
    warning logged): then a sequence that ends with eos has its reward read one token early,
    consistently in training and scoring.
    """
    from transformers import AutoTokenizer

    path = check_model_path(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as exc:  # a hub id that is not in the local cache
        raise ModelNotFound(path, "model") from exc
    if PAD_TOKEN in tokenizer.get_vocab():
        tokenizer.pad_token = PAD_TOKEN
    elif tokenizer.pad_token is None:
        log.warning("%s: no pad token and no %s; using eos as pad", path, PAD_TOKEN)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def render_prompt(tokenizer: PreTrainedTokenizerBase, prompt: PromptInput) -> str:
    """The text a model sees before its answer, identical in every stage.

    With a chat template: a string prompt becomes one user message, and the template is
    applied with the generation prompt (`<|im_start|>assistant\\n` for ChatML). Without one:
    the string itself, or the messages' contents joined by blank lines.
    """
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    if tokenizer.chat_template is not None:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(m["content"] for m in messages) + "\n\n"


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: PromptInput) -> list[int]:
    """Token ids of `render_prompt(tokenizer, prompt)`.

    A chat template writes its own special tokens (BOS included when the model uses one), so
    the tokenizer must not add them again; a plain-text prompt gets the tokenizer's usual ones.
    """
    text = render_prompt(tokenizer, prompt)
    ids = tokenizer(text, add_special_tokens=tokenizer.chat_template is None)["input_ids"]
    return list(ids)


def encode_response(tokenizer: PreTrainedTokenizerBase, response: str) -> list[int]:
    """Token ids of a model answer. Answers are untrusted text: a literal `<|im_end|>` in them
    is encoded as plain characters, never as the special token."""
    ids = tokenizer(response, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    return list(ids)


# ---- causal LM ----


def load_causal_lm(
    path: str | Path,
    *,
    adapter: str | Path | None = None,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    trainable: bool = False,
    load_in_4bit: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load (model, tokenizer) from a local folder or cached hub id, with an optional adapter.

    With `adapter`, the model is a peft PeftModel (`with model.disable_adapter():` gives the
    base). `trainable` puts the model in train mode and loads the adapter trainable; the base
    weights stay frozen whenever an adapter is present. `load_in_4bit` loads the base in 4-bit
    NF4 through bitsandbytes (QLoRA; CUDA only).
    """
    from transformers import AutoModelForCausalLM

    path = check_model_path(path)
    if adapter is not None:
        adapter = check_adapter_path(adapter)
    model, tokenizer = load_pretrained(
        AutoModelForCausalLM, path, device=device, dtype=dtype, load_in_4bit=load_in_4bit
    )

    if adapter is not None:
        model = load_adapter(model, adapter, trainable=trainable)
    model.train(trainable)
    return model, tokenizer


def load_sequence_classifier(
    path: str | Path,
    *,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    load_in_4bit: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM checkpoint as a 1-label sequence classifier (a reward model body).

    The `score` head is new and random here; a reward adapter folder carries the trained one.
    """
    from transformers import AutoModelForSequenceClassification

    with _quiet_new_score_head():
        return load_pretrained(
            AutoModelForSequenceClassification,
            path,
            device=device,
            dtype=dtype,
            load_in_4bit=load_in_4bit,
            num_labels=1,
        )


def load_pretrained(
    model_class: Any,
    path: str | Path,
    *,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    load_in_4bit: bool = False,
    **kwargs: Any,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The one place a base model is read: `model_class.from_pretrained` (an AutoModel class)
    on the device and dtype of `pick_device`/`pick_dtype`, with the pad rule applied.

    `load_in_4bit` loads the linear layers' weights in 4-bit NF4 through bitsandbytes (QLoRA:
    a LoRA adapter trains on top, in `dtype`); it needs a CUDA GPU and is checked before
    anything is read (`check_load_in_4bit`).
    """
    check_load_in_4bit(load_in_4bit)
    path = check_model_path(path)
    tokenizer = load_tokenizer(path)
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(torch_device, dtype)
    if load_in_4bit:
        import torch

        kwargs["quantization_config"] = bnb_4bit_config()
        index = torch.cuda.current_device() if torch_device.index is None else torch_device.index
        kwargs["device_map"] = {"": index}  # bitsandbytes places the weights itself
    model = model_class.from_pretrained(path, dtype=torch_dtype, **kwargs)
    if not load_in_4bit:
        model.to(torch_device)
    _set_pad(model, tokenizer)
    return model, tokenizer


def _quiet_new_score_head() -> Any:
    """Silence the load report's "score.weight MISSING": a causal LM has no score head, and
    the trained one comes from the reward adapter. TRL's helper; a no-op if it moves."""
    try:
        from trl.trainer.reward_trainer import suppress_seqcls_warning
    except ImportError:
        return contextlib.nullcontext()
    return suppress_seqcls_warning()


def _set_pad(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    # A converted SmolLM2 folder says pad_token_id=2 (<|im_end|>), the eos inside every chat
    # prompt: a classifier head would then read the reward from padding (module docstring).
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id


LOAD_IN_4BIT_NEEDS = (
    "load_in_4bit needs a CUDA GPU and bitsandbytes: pip install -r requirements-gpu.txt"
)


def check_reference_adapter(
    config_name: str, init_adapter: str | None, reference_adapter: str | None
) -> None:
    """ValueError when a policy stage names a reference adapter but no adapter to start from
    (PPO and DPO alike): a new adapter starts at the base model, its reference."""
    if reference_adapter is not None and init_adapter is None:
        raise ValueError(
            f"{config_name}.reference_adapter needs init_adapter: a new adapter starts at the "
            "base model, which is then its reference (set init_adapter to where the policy "
            "starts, e.g. the same SFT adapter)"
        )


def check_load_in_4bit(load_in_4bit: bool) -> None:
    """ValueError (LOAD_IN_4BIT_NEEDS, and what is missing) when `load_in_4bit` is asked for
    on a machine without a CUDA GPU or without bitsandbytes. Reads no model; every stage
    config's `validate()` calls it, so the error comes before any work."""
    if not load_in_4bit:
        return
    import importlib.util

    import torch

    missing = [
        what
        for what, ok in (
            ("no CUDA GPU here", torch.cuda.is_available()),
            ("bitsandbytes is not installed", importlib.util.find_spec("bitsandbytes")),
        )
        if not ok
    ]
    if missing:
        raise ValueError(f"{LOAD_IN_4BIT_NEEDS} ({'; '.join(missing)})")


def bnb_4bit_config() -> Any:
    """BitsAndBytesConfig for QLoRA: NF4 with double quantization (Dettmers et al., 2023,
    https://arxiv.org/abs/2305.14314), computing in bf16 where the GPU has it."""
    import torch
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
    )


# ---- LoRA ----


@dataclass
class LoraSettings:
    """LoRA hyper-parameters shared by the reward and PPO stages."""

    r: int = 16  # rank of the update matrices
    alpha: int = 32  # scaling numerator: the update is scaled by alpha / r
    dropout: float = 0.05  # dropout on the LoRA input
    target_modules: str = "all-linear"
    # layers that get adapters: "all-linear" (every linear but the output head) or "q_proj,v_proj"

    def validate(self) -> None:
        if self.r <= 0:
            raise ValueError(f"lora r must be positive, got {self.r}")
        if self.alpha <= 0:
            raise ValueError(f"lora alpha must be positive, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora dropout must be in [0, 1), got {self.dropout}")

    def peft_config(self, task_type: str = "CAUSAL_LM") -> Any:
        """A peft LoraConfig. For task_type "SEQ_CLS" peft also trains and saves the `score`
        head (modules_to_save), so a reward adapter folder is self-contained."""
        from peft import LoraConfig

        self.validate()
        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=(
                self.target_modules
                if self.target_modules == "all-linear"
                else [m.strip() for m in self.target_modules.split(",")]
            ),
            task_type=task_type,
            modules_to_save=["score"] if task_type == "SEQ_CLS" else None,
        )


def attach_lora(
    model: PreTrainedModel, settings: LoraSettings, *, task_type: str = "CAUSAL_LM"
) -> Any:
    """Wrap `model` in a new trainable LoRA adapter; base weights are frozen."""
    from peft import get_peft_model

    if getattr(model, "is_loaded_in_4bit", False):
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return get_peft_model(model, settings.peft_config(task_type))


def load_adapter(model: PreTrainedModel, adapter: str | Path, *, trainable: bool = False) -> Any:
    """Load a saved LoRA adapter onto `model` (a PeftModel comes back)."""
    from peft import PeftModel

    adapter = check_adapter_path(adapter)
    return PeftModel.from_pretrained(model, adapter, is_trainable=trainable)


def merge_adapter(model: Any) -> PreTrainedModel:
    """Fold a PeftModel's adapter into the base weights and return the plain model
    (for fast inference or export; not for a 4-bit base)."""
    return model.merge_and_unload()
