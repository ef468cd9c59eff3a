"""JSONL files in and out of training/ml: loading, validation, splitting.

The formats are fixed by docs/ml-contract.md:

- preference data: `{"prompt": <prompt>, "chosen": <answer>, "rejected": <answer>, "margin"?: float}`
- prompts: `{"prompt": <prompt>}`

where `<prompt>` is a string or a list of chat messages `{"role", "content"}` and `<answer>` is
a string or `[{"role": "assistant", "content": str}]` (TRL's explicit-prompt format).

A file is validated whole before any work starts; the first problem raises one DataError that
names the file and the line. Nothing here imports torch, so validation is cheap.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import random
import typing
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.ml.errors import DataError

Message = dict[str, str]
PromptInput = str | list[Message]  # plain text, or chat messages

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class PreferencePair:
    """One validated line of preference data, answers reduced to their text."""

    prompt: PromptInput
    chosen: str
    rejected: str
    margin: float | None
    line: int  # 1-based line in the source file, for error messages and reports


# ---- reading ----


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; DataError on anything else."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    with path.open("r", encoding="utf-8") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise DataError(path, f"malformed JSON ({exc.msg})", line=number) from None
            if not isinstance(obj, dict):
                raise DataError(path, "expected a JSON object", line=number)
            yield number, obj


def load_preferences(path: str | Path) -> list[PreferencePair]:
    """Read and validate a whole preference file (see module docstring)."""
    pairs = []
    for line, obj in iter_jsonl(path):
        for key in ("prompt", "chosen", "rejected"):
            if key not in obj:
                raise DataError(path, f"missing field {key!r}", line=line)
        prompt = _check_prompt(obj["prompt"], path, line)
        chosen = _check_answer(obj["chosen"], "chosen", path, line)
        rejected = _check_answer(obj["rejected"], "rejected", path, line)
        if chosen == rejected:
            raise DataError(path, "'chosen' and 'rejected' are identical", line=line)
        margin = obj.get("margin")
        if margin is not None and (
            isinstance(margin, bool)
            or not isinstance(margin, int | float)
            or not math.isfinite(margin)
        ):
            raise DataError(path, "field 'margin' must be a finite number", line=line)
        pairs.append(
            PreferencePair(
                prompt=prompt,
                chosen=chosen,
                rejected=rejected,
                margin=None if margin is None else float(margin),
                line=line,
            )
        )
    if not pairs:
        raise DataError(path, "no preference pairs (the file is empty)")
    return pairs


def load_prompts(path: str | Path) -> list[PromptInput]:
    """Read and validate a whole prompts file: one `{"prompt": <prompt>}` per line."""
    prompts = []
    for line, obj in iter_jsonl(path):
        if "prompt" not in obj:
            raise DataError(path, "missing field 'prompt'", line=line)
        prompts.append(_check_prompt(obj["prompt"], path, line))
    if not prompts:
        raise DataError(path, "no prompts (the file is empty)")
    return prompts


def write_jsonl(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write rows as JSON lines (UTF-8, one object per line)."""
    with Path(path).open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


# ---- validation of one field ----


def _check_prompt(value: Any, path: str | Path, line: int, field: str = "prompt") -> PromptInput:
    if isinstance(value, str):
        if not value.strip():
            raise DataError(path, f"field {field!r} is empty", line=line)
        return value
    if not isinstance(value, list) or not value:
        raise DataError(path, f"field {field!r} must be a string or a list of messages", line=line)
    for i, message in enumerate(value):
        if (
            not isinstance(message, dict)
            or message.get("role") not in ROLES
            or not isinstance(message.get("content"), str)
        ):
            raise DataError(
                path,
                f"field {field!r}, message {i}: expected {{'role': one of {list(ROLES)}, "
                "'content': string}",
                line=line,
            )
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _check_answer(value: Any, field: str, path: str | Path, line: int) -> str:
    """An answer is a string or `[{"role": "assistant", "content": str}]`; return its text."""
    if isinstance(value, str):
        return value
    if (
        isinstance(value, list)
        and len(value) == 1
        and isinstance(value[0], dict)
        and value[0].get("role") == "assistant"
        and isinstance(value[0].get("content"), str)
    ):
        return value[0]["content"]
    raise DataError(
        path,
        f"field {field!r} must be a string or [{{'role': 'assistant', 'content': string}}]",
        line=line,
    )


# ---- splitting ----


def prompt_key(prompt: PromptInput) -> str:
    """A stable identity for a prompt (same text or same messages -> same key)."""
    return json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def split_by_prompt(
    pairs: Sequence[PreferencePair], *, eval_fraction: float, seed: int
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Split pairs into (train, held-out) so that no prompt is in both.

    Deterministic for a given seed and set of prompts, whatever the file order. Whole prompts
    are held out until at least `eval_fraction` of the pairs are; with any pairs and a
    positive fraction, at least one prompt is held out and at least one kept for training
    (when there are two or more prompts).
    """
    if eval_fraction <= 0:
        return list(pairs), []
    keys = sorted({prompt_key(p.prompt) for p in pairs})
    # Shuffle by a seeded hash rather than random.shuffle of a list, so adding one prompt does
    # not reshuffle every other prompt to the other side.
    keys.sort(key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
    counts = Counter(prompt_key(p.prompt) for p in pairs)
    target = eval_fraction * len(pairs)
    held: set[str] = set()
    n_held = 0
    for key in keys[:-1]:  # the last prompt always stays for training
        if n_held >= target:
            break
        held.add(key)
        n_held += counts[key]
    train = [p for p in pairs if prompt_key(p.prompt) not in held]
    heldout = [p for p in pairs if prompt_key(p.prompt) in held]
    return train, heldout


def sample_prompts(
    prompts: Sequence[PromptInput], n: int | None, *, seed: int
) -> list[PromptInput]:
    """Up to n prompts chosen at random (seeded), in file order; all of them when n is None."""
    if n is None or n >= len(prompts):
        return list(prompts)
    chosen = sorted(random.Random(seed).sample(range(len(prompts)), n))
    return [prompts[i] for i in chosen]


# ---- command line ----


def add_config_arguments(
    parser: argparse.ArgumentParser, config_cls: type, *, renames: dict[str, str] | None = None
) -> None:
    """Add one `--flag` per field of a config dataclass, with the field's `help` metadata.

    Flags are the field names with dashes (`--max-new-tokens`); `renames` gives shorter ones
    (`{"base_model": "base"}` -> `--base`). Required fields (no default) are required flags.
    """
    renames = renames or {}
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        flag = "--" + renames.get(f.name, f.name).replace("_", "-")
        kind = hints[f.name]
        base = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
        help_text = f.metadata.get("help", "")
        if base is bool:
            parser.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=f.default,
                help=help_text,
            )
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        parser.add_argument(
            flag,
            dest=f.name,
            type=base if base in (int, float, str) else str,
            required=required,
            default=None if required else f.default,
            help=help_text + ("" if required else f" (default: {f.default})"),
        )


def config_from_arguments(config_cls: type, args: argparse.Namespace) -> Any:
    """Build the config dataclass from parsed arguments (see add_config_arguments)."""
    names = [f.name for f in dataclasses.fields(config_cls)]
    return config_cls(**{name: getattr(args, name) for name in names})


def config_from_values(config_cls: type, values: dict[str, Any]) -> Any:
    """Build the config dataclass from a JSON object (a job spec's `config`): ValueError naming
    an unknown field, a missing required one, or a value of the wrong type."""
    if not isinstance(values, dict):
        raise ValueError(f"{config_cls.__name__}: expected an object, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown {config_cls.__name__} field(s): {', '.join(unknown)}; "
            f"known: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(config_cls)
    for name, f in fields.items():
        if name not in values:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"{config_cls.__name__}.{name} is required")
            continue
        kinds = typing.get_args(hints[name]) or (hints[name],)
        if not any(_is_a(values[name], kind) for kind in kinds):
            raise ValueError(
                f"{config_cls.__name__}.{name} must be {' or '.join(k.__name__ for k in kinds)}, "
                f"got {values[name]!r}"
            )
    return config_cls(**values)


def _is_a(value: Any, kind: Any) -> bool:
    if kind is type(None):
        return value is None
    if isinstance(value, bool):  # JSON true/false is not a number
        return kind is bool
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, typing.get_origin(kind) or kind)
