"""What the stages built on TRL's trainers (`training.ml.sft`, `training.ml.dpo`) share.

- `StageConfig`: the config fields they have in common and their invariants;
- TrainingArguments from our config (`trainer_arguments`: bf16 off on a CPU, TRL's default
  activation checkpointing off, nothing saved by the Trainer itself);
- `MetricsLog`: the metrics of a run, sent to `on_metrics` as they come and kept for
  `metrics.jsonl`, with the `TrainerCallback` that feeds it TRL's logs;
- `answer_logprobs`: log-probs of answer tokens with a plain forward pass, for held-out scores;
- `save_policy`: a policy folder in ppo.py's layout, so `generate`, `evaluate` and a later
  stage's `init_adapter` read it as they read PPO's;
- `run_command`: the `python -m training.ml.<stage>` command line.

Importing this module imports neither torch nor TRL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.ml.data import add_config_arguments, config_from_arguments, write_jsonl
from training.ml.loading import LoraSettings, check_load_in_4bit

OnMetrics = Callable[[dict[str, Any]], None]

log = logging.getLogger(__name__)


# ---- configs ----


@dataclass
class StageConfig:
    """The fields every TRL stage has. A stage's config adds its own after them, and may give
    one of these another default or help (dataclass fields keep their place when redefined)."""

    base_model: str = field(metadata={"help": "base model folder (or cached hub id)"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank of a new adapter"})
    lora_alpha: int = field(
        default=32, metadata={"help": "LoRA alpha of a new adapter (update scaled by alpha/r)"}
    )
    lora_dropout: float = field(
        default=0.05, metadata={"help": "dropout on the LoRA input of a new adapter"}
    )
    lora_target_modules: str = field(
        default="all-linear",
        metadata={"help": 'layers with adapters: "all-linear" or "q_proj,v_proj"'},
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the training data"})
    batch_size: int = field(
        default=8,
        metadata={
            "help": "examples per batch over all processes: N data-parallel processes take "
            "batch_size / N each and train as one does (a multiple of N)"
        },
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "batches whose gradients are summed into one update"}
    )
    max_length: int = field(default=1024, metadata={"help": "longest example in tokens"})
    eval_fraction: float = field(
        default=0.1, metadata={"help": "share of the data held out (whole prompts)"}
    )
    seed: int = field(default=0, metadata={"help": "seed for the split, the adapter and the order"})
    logging_steps: int = field(default=5, metadata={"help": "report metrics every this many steps"})
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "trade compute for memory (slower; off by default)"}
    )
    bf16: bool | None = field(
        default=None, metadata={"help": "bf16 autocast; default on for CUDA with bf16, off on CPU"}
    )
    load_in_4bit: bool = field(
        default=False,
        metadata={"help": "QLoRA: the base model in 4-bit NF4 (CUDA and bitsandbytes only)"},
    )

    def validate(self) -> None:
        """Raise ValueError naming the first field that breaks an invariant (and its class)."""
        name = type(self).__name__
        if not self.base_model:
            raise ValueError(f"{name}.base_model is required")
        self.lora_settings().validate()
        for attr in ("batch_size", "gradient_accumulation_steps", "logging_steps"):
            if getattr(self, attr) < 1:
                raise ValueError(f"{name}.{attr} must be >= 1, got {getattr(self, attr)}")
        for attr in ("learning_rate", "epochs"):
            if not getattr(self, attr) > 0:
                raise ValueError(f"{name}.{attr} must be > 0, got {getattr(self, attr)}")
        if self.max_length < 8:
            raise ValueError(f"{name}.max_length must be >= 8, got {self.max_length}")
        if not 0 <= self.eval_fraction < 1:
            raise ValueError(f"{name}.eval_fraction must be in [0, 1), got {self.eval_fraction}")
        check_load_in_4bit(self.load_in_4bit)

    def lora_settings(self) -> LoraSettings:
        return LoraSettings(
            r=self.lora_r,
            alpha=self.lora_alpha,
            dropout=self.lora_dropout,
            target_modules=self.lora_target_modules,
        )


def check_out_dir(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"output folder is not empty: {out}")
    return out


# ---- the trainer ----


def trainer_device() -> str:
    """This process's device: alone, or one of `accelerate launch`'s (gloo between CPU ones)."""
    import torch
    from accelerate import PartialState

    return str(PartialState(cpu=not torch.cuda.is_available()).device)


def trainer_arguments(config: Any, output_dir: str | Path, progress_bar: bool) -> dict[str, Any]:
    """TrainingArguments that SFTConfig and DPOConfig take alike, from our config's fields."""
    import torch

    bf16 = config.bf16
    if bf16 is None:  # TRL defaults to True, which fails or crawls on a CPU
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return dict(
        output_dir=str(output_dir),  # a scratch folder: nothing is saved there
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        # the global batch, each process taking its share of it: the same batches for any
        # number of processes (a per-device batch would change the length grouping of SFT)
        per_device_train_batch_size=config.batch_size,
        accelerator_config={"split_batches": True},
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        # TRL defaults it to True; transformers 5 names it activation_checkpointing
        activation_checkpointing=config.gradient_checkpointing,
        bf16=bf16,
        logging_steps=config.logging_steps,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        seed=config.seed,
        data_seed=config.seed,
        disable_tqdm=not progress_bar,
        use_cpu=not torch.cuda.is_available(),
    )


def check_last_batch(examples: int, batch_size: int, processes: int) -> None:
    """Warn when N > 1 processes will not train exactly as one: the last batch of an epoch,
    short of `batch_size`, is filled up by accelerate with the epoch's first examples so that
    each process gets its share (one process trains on the short batch as it is). Every other
    batch is the same; `examples` a multiple of `batch_size` makes them all the same."""
    if processes > 1 and examples % batch_size:
        log.warning(
            "%d training examples are not a multiple of batch_size %d: with %d processes the "
            "last batch of each epoch is filled up with the epoch's first examples",
            examples,
            batch_size,
            processes,
        )


class MetricsLog:
    """The metric dicts of a run, in order: each is kept and sent on to `on_metrics`."""

    def __init__(self, on_metrics: OnMetrics | None) -> None:
        self.on_metrics = on_metrics
        self.history: list[dict[str, Any]] = []

    def __call__(self, metrics: dict[str, Any]) -> None:
        # JSON has no NaN/inf: report them as None
        metrics = {
            k: None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in metrics.items()
        }
        self.history.append(metrics)
        if self.on_metrics is not None:
            self.on_metrics(dict(metrics))

    def callback(self) -> Any:
        """A TrainerCallback that logs each of TRL's log dicts (main process), with "step"."""
        from transformers import TrainerCallback

        log = self

        class MetricsCallback(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[override]  # noqa: ANN001, ANN201
                if logs and state.is_world_process_zero:
                    log({"step": state.global_step, **logs})

        return MetricsCallback()


def quiet(trainer: Any, progress_bar: bool) -> Any:
    """Without a progress bar, the Trainer prints every log dict to stdout instead: stop that."""
    if not progress_bar:
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    return trainer


# ---- scores ----


def answer_logprobs(
    model: Any, input_ids: Any, attention_mask: Any, answer_mask: Any
) -> tuple[Any, Any]:
    """Sum of log p(token) over each row's answer tokens, and their number: (B,), (B,).

    Rows are right-padded (B, T); `answer_mask` is 1 on answer tokens. Evaluation mode, no
    gradient, float32 log-softmax: the same numbers for a model and for its copy.
    """
    import torch

    from training.ml.ppo import token_logprobs

    device = next(model.parameters()).device
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        logps = token_logprobs(logits[:, :-1], input_ids[:, 1:])  # (B, T-1): predicts token t+1
    model.train(was_training)
    mask = answer_mask[:, 1:].to(device=device, dtype=logps.dtype)
    return (logps * mask).sum(1), mask.sum(1)


# ---- the policy folder ----


def save_policy(
    out: Path,
    model: Any,
    tokenizer: Any,
    record: dict[str, Any],
    history: Sequence[dict[str, Any]],
    extra: dict[str, Sequence[dict[str, Any]]] | None = None,
) -> None:
    """Write a policy folder as ppo.py does (adapter, tokenizer, metrics, hone_policy.json, and
    `extra` JSONL files), built aside and renamed into place. Only the adapter named "default"
    is saved: DPO's frozen reference copy stays behind."""
    from training.ml.ppo import METRICS_FILE, POLICY_FILE

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(str(work), selected_adapters=["default"])
        tokenizer.save_pretrained(str(work))
        write_jsonl(work / METRICS_FILE, history)
        for name, rows in (extra or {}).items():
            write_jsonl(work / name, rows)
        (work / POLICY_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()  # empty, checked before training
        os.replace(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---- command line ----


def run_command(
    argv: list[str] | None, *, prog: str, description: str, config_cls: type, train: Callable
) -> None:
    """The command line of a stage: one flag per config field, `--data`, `--out`; metrics as
    JSON lines on stdout (or `--metrics FILE`), then `{"result": ...}`; bad input: one line."""
    from accelerate import PartialState

    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_config_arguments(parser, config_cls, renames={"base_model": "base"})
    parser.add_argument("--data", required=True, help="training data JSONL (docs/ml-contract.md)")
    parser.add_argument("--out", required=True, help="folder to write the policy adapter into")
    parser.add_argument("--metrics", help="write metrics JSON lines here instead of stdout")
    args = parser.parse_args(argv)
    config = config_from_arguments(config_cls, args)

    # stdout carries JSON lines only: TRL's and tqdm's prints go to stderr
    stdout = sys.stdout
    sink = open(args.metrics, "w", encoding="utf-8") if args.metrics else stdout  # noqa: SIM115

    def on_metrics(metrics: dict[str, Any]) -> None:
        sink.write(json.dumps(metrics) + "\n")
        sink.flush()

    try:
        with contextlib.redirect_stdout(sys.stderr):
            result = train(config, args.data, args.out, on_metrics=on_metrics, progress_bar=True)
    except ValueError as exc:  # bad input: one clear line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        if sink is not stdout:
            sink.close()
    if PartialState().is_main_process:  # under `accelerate launch`, once
        print(json.dumps({"result": result}), flush=True)
