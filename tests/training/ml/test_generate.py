from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
import torch

from tests.training.ml.conftest import write_prompts
from training.ml.errors import DataError
from training.ml.generate import GenerateConfig, generate, main, sample_with_model
from training.ml.loading import load_causal_lm

PROMPTS = [
    "What is the capital of France?",
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
    "héllo 日本語",  # multi-byte characters: streamed pieces must not split them
]


def config(tiny_model: str, **overrides: object) -> GenerateConfig:
    settings = {"num_samples": 2, "max_new_tokens": 12, "batch_size": 4, "seed": 0}
    settings.update(overrides)
    return GenerateConfig(base_model=tiny_model, **settings)  # type: ignore[arg-type]


def test_generate_returns_num_samples_per_prompt_with_counts(tiny_model: str) -> None:
    progress: list[tuple[int, int]] = []

    results = generate(
        config(tiny_model), PROMPTS, on_progress=lambda d, t: progress.append((d, t))
    )

    assert [len(samples) for samples in results] == [2, 2, 2]
    for sample in (s for samples in results for s in samples):
        assert sample.finish_reason in ("stop", "length")
        assert sample.token_count == len(sample.token_ids)
        assert sample.token_count <= 12
        assert (sample.finish_reason == "length") == (sample.token_count == 12)
    assert progress == [(0, 6), (4, 6), (6, 6)]


def test_on_token_pieces_concatenate_to_each_text(tiny_model: str) -> None:
    streamed: dict[int, str] = defaultdict(str)

    def on_token(index: int, piece: str) -> None:
        streamed[index] += piece

    results = generate(config(tiny_model, max_new_tokens=24), PROMPTS, on_token=on_token)

    texts = [s.text for samples in results for s in samples]
    assert [streamed[i] for i in range(len(texts))] == texts
    assert all(texts)


def test_same_seed_same_texts_other_seed_other_texts(tiny_model: str) -> None:
    def texts(seed: int) -> list[str]:
        return [s.text for ss in generate(config(tiny_model, seed=seed), PROMPTS) for s in ss]

    first = texts(seed=0)

    assert texts(seed=0) == first
    assert texts(seed=1) != first


def test_an_end_of_turn_token_stops_the_answer(tiny_model: str) -> None:
    model, tokenizer = load_causal_lm(tiny_model)
    boost = torch.zeros(len(tokenizer))
    boost[tokenizer.eos_token_id] = 1e4  # the model now ends its turn at once
    model.lm_head.register_forward_hook(lambda module, args, output: output + boost)
    streamed: list[tuple[int, str]] = []

    samples = sample_with_model(
        model,
        tokenizer,
        PROMPTS,
        num_samples=2,
        max_new_tokens=8,
        on_token=lambda i, p: streamed.append((i, p)),
    )

    assert [(s.text, s.token_count, s.finish_reason) for s in samples] == [("", 0, "stop")] * 6
    assert streamed == []


def test_cli_writes_one_json_line_per_prompt(tiny_model: str, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", PROMPTS)
    out = tmp_path / "samples.jsonl"

    main(
        [
            "--base",
            tiny_model,
            "--prompts",
            str(prompts),
            "--out",
            str(out),
            "--num-samples",
            "3",
            "--max-new-tokens",
            "5",
        ]
    )

    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [row["prompt"] for row in rows] == PROMPTS
    assert [len(row["samples"]) for row in rows] == [3, 3, 3]
    assert set(rows[0]["samples"][0]) == {"text", "token_count", "finish_reason"}


def test_cli_rejects_a_bad_prompts_file_naming_the_line(tiny_model: str, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "ok"}\n{"text": "no prompt key"}\n', encoding="utf-8")
    out = tmp_path / "samples.jsonl"

    with pytest.raises(DataError, match=f"{prompts}, line 2: missing field 'prompt'"):
        main(["--base", tiny_model, "--prompts", str(prompts), "--out", str(out)])
    assert not out.exists()
