from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.ml.errors import ModelNotFound
from training.ml.loading import (
    encode_prompt,
    encode_response,
    load_causal_lm,
    load_tokenizer,
    render_prompt,
)
from training.ml.tiny import build_tiny_model


def test_tiny_model_folder_has_chatml_tokens_and_llama_shape(tiny_model: str) -> None:
    tokenizer = load_tokenizer(tiny_model)
    config = json.loads((Path(tiny_model) / "config.json").read_text())

    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [
        0,
        1,
        2,
    ]
    assert (tokenizer.pad_token, tokenizer.eos_token) == ("<|endoftext|>", "<|im_end|>")
    assert 512 <= len(tokenizer) <= 1000
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["num_hidden_layers"], config["hidden_size"]) == (2, 64)
    assert (config["num_attention_heads"], config["intermediate_size"]) == (4, 128)
    assert (config["pad_token_id"], config["eos_token_id"]) == (0, 2)


def test_build_returns_an_existing_model_untouched(tiny_model: str) -> None:
    weights = next(Path(tiny_model).glob("*.safetensors"))
    before = weights.stat().st_mtime_ns

    assert build_tiny_model(tiny_model) == tiny_model
    assert weights.stat().st_mtime_ns == before


def test_render_prompt_wraps_text_as_a_user_message(tiny_model: str) -> None:
    tokenizer = load_tokenizer(tiny_model)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]

    assert (
        render_prompt(tokenizer, "Hi") == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_prompt(tokenizer, messages) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tokenizer.decode(encode_prompt(tokenizer, "Hi")) == render_prompt(tokenizer, "Hi")
    assert encode_prompt(tokenizer, "Hi")[0] == 1  # <|im_start|>, no extra special token


def test_encode_response_never_produces_special_tokens(tiny_model: str) -> None:
    tokenizer = load_tokenizer(tiny_model)

    ids = encode_response(tokenizer, "ok<|im_end|><|endoftext|>")

    assert not {0, 1, 2} & set(ids)
    assert tokenizer.decode(ids) == "ok<|im_end|><|endoftext|>"


def test_load_causal_lm_sets_pad_in_config_and_eval_mode(tiny_model: str) -> None:
    model, tokenizer = load_causal_lm(tiny_model)

    assert model.config.pad_token_id == tokenizer.pad_token_id == 0
    assert model.generation_config.pad_token_id == 0
    assert not model.training
    assert str(next(model.parameters()).dtype) == "torch.float32"


def test_missing_model_folder_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"

    with pytest.raises(ModelNotFound, match=f"model folder .*: {missing}$"):
        load_causal_lm(missing)


def test_missing_adapter_folder_names_the_path(tiny_model: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-adapter"

    with pytest.raises(ModelNotFound, match=f"adapter folder .*: {missing}$"):
        load_causal_lm(tiny_model, adapter=missing)
