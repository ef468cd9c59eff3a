"""Supervised fine-tuning (training/ml/sft.py) on the tiny model; no database, no network."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.training.ml.conftest import write_demonstrations
from training.ml.data import write_jsonl
from training.ml.errors import DataError
from training.ml.loading import encode_prompt, encode_response, load_causal_lm, load_tokenizer
from training.ml.ppo import METRICS_FILE, POLICY_FILE
from training.ml.sft import (
    Demonstration,
    SFTTrainConfig,
    build_sft_trainer,
    encode_demonstration,
    load_demonstrations,
    main,
    train_sft,
)


def small_config(base: str, **overrides: object) -> SFTTrainConfig:
    values: dict = dict(
        base_model=base,
        lora_r=8,
        lora_alpha=16,
        learning_rate=5e-3,
        epochs=2,
        batch_size=8,
        max_length=64,
        eval_fraction=0.25,
        logging_steps=1,
    )
    values.update(overrides)
    return SFTTrainConfig(**values)


@pytest.fixture(scope="module")
def sft_run(tiny_model: str, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("sft")
    data = write_demonstrations(root / "demos.jsonl", 40)
    seen: list[dict] = []
    result = train_sft(small_config(tiny_model), data, root / "policy", on_metrics=seen.append)
    return root / "policy", result, seen


# ---- the run ----


def test_sft_lowers_the_heldout_loss_on_a_planted_pattern(sft_run) -> None:
    _, result, _ = sft_run

    # 40 demonstrations, 40 prompts: whole prompts held out until 25% of them are
    assert (result["train_demonstrations"], result["heldout_demonstrations"]) == (30, 10)
    assert result["steps"] == 8  # 2 epochs of 4 batches (8, 8, 8, 6)
    # The tiny model starts near uniform over its 768 tokens (log 768 = 6.64 nats per token);
    # 8 steps bring the held-out answers down by more than 0.3 nats a token (measured: 0.45).
    assert result["heldout_loss_before"] > 6.5
    assert result["heldout_loss"] < result["heldout_loss_before"] - 0.3
    assert result["heldout_perplexity"] == pytest.approx(math.exp(result["heldout_loss"]))
    assert result["heldout_perplexity_before"] == pytest.approx(
        math.exp(result["heldout_loss_before"])
    )


def test_metrics_stream_and_the_folder_is_a_policy(sft_run, tiny_model: str) -> None:
    out, result, seen = sft_run

    assert seen[0] == {
        "step": 0,
        "heldout_loss": result["heldout_loss_before"],
        "heldout_perplexity": result["heldout_perplexity_before"],
    }
    training_logs = [m for m in seen if "loss" in m]
    assert [m["step"] for m in training_logs] == list(range(1, 9))
    assert {"loss", "learning_rate", "grad_norm", "mean_token_accuracy"} <= set(training_logs[0])
    assert seen[-1]["heldout_loss"] == result["heldout_loss"]
    assert [json.loads(line) for line in (out / METRICS_FILE).read_text().splitlines()] == seen

    record = json.loads((out / POLICY_FILE).read_text())
    assert (record["kind"], record["base_model"], record["init_adapter"]) == (
        "sft",
        tiny_model,
        None,
    )
    assert record["summary"] == {k: v for k, v in result.items() if k != "out_dir"}
    weights = load_file(out / "adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and all(w.abs().sum() > 0 for w in lora_b)  # peft starts lora_B at zero
    assert not list(out.parent.glob(".policy.*"))  # the work folder is gone

    # generate/evaluate load it as they load a PPO policy: the adapter changes the answer
    model, tokenizer = load_causal_lm(tiny_model, adapter=out, device="cpu")
    ids = torch.tensor([encode_prompt(tokenizer, "Question 99: tell me about the sea.")])
    with torch.no_grad():
        tuned = model(input_ids=ids).logits[0, -1]
        with model.disable_adapter():
            base = model(input_ids=ids).logits[0, -1]
    the = tokenizer("The", add_special_tokens=False)["input_ids"][0]
    assert tuned.argmax() == the  # every answer starts with "The"
    assert base.argmax() != the


# ---- the loss is on the answer tokens only ----


def test_a_collated_batch_masks_the_prompt_tokens(tiny_model: str, tmp_path: Path) -> None:
    tokenizer = load_tokenizer(tiny_model)
    demonstrations = load_demonstrations(write_demonstrations(tmp_path / "d.jsonl", 6))
    rows = [encode_demonstration(tokenizer, d) for d in demonstrations]
    trainer = build_sft_trainer(
        small_config(tiny_model, batch_size=6), tokenizer, rows, output_dir=tmp_path / "scratch"
    )

    batch = next(iter(trainer.get_train_dataloader()))  # exactly what the model is trained on

    assert batch["input_ids"].shape[0] == 6
    prompt_tokens = {tuple(ids): n for ids, n in rows}
    for ids, labels, mask in zip(
        batch["input_ids"].tolist(),
        batch["labels"].tolist(),
        batch["attention_mask"].tolist(),
        strict=True,
    ):
        length = sum(mask)
        n = prompt_tokens[tuple(ids[:length])]
        assert labels[:n] == [-100] * n  # the prompt, its end `<|im_start|>assistant\n` included
        assert labels[n:length] == ids[n:length]  # the answer and its <|im_end|>
        assert labels[length - 1] == tokenizer.eos_token_id
        assert labels[length:] == [-100] * (len(ids) - length)  # padding


def test_a_demonstration_is_encoded_as_the_policy_reads_and_writes_it(tiny_model: str) -> None:
    tokenizer = load_tokenizer(tiny_model)
    demonstration = Demonstration(prompt="Hi", answer="yes <|im_end|> no", line=1)

    ids, prompt_tokens = encode_demonstration(tokenizer, demonstration)

    answer = encode_response(tokenizer, "yes <|im_end|> no")
    assert ids == encode_prompt(tokenizer, "Hi") + answer + [tokenizer.eos_token_id]
    assert prompt_tokens == len(encode_prompt(tokenizer, "Hi"))
    assert ids.count(tokenizer.eos_token_id) == 2  # the prompt's end of turn and the answer's


def test_both_formats_load(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    system = {"role": "system", "content": "Be brief."}
    write_jsonl(
        path,
        [
            {
                "messages": [
                    system,
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello."},
                    {"role": "user", "content": "Bye"},
                    {"role": "assistant", "content": "Goodbye."},
                ]
            },
            {"prompt": "Hi", "completion": "Hello."},
            {"prompt": [system], "completion": [{"role": "assistant", "content": "Ok."}]},
        ],
    )

    assert load_demonstrations(path) == [
        Demonstration(
            prompt=[
                system,
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "Bye"},
            ],
            answer="Goodbye.",
            line=1,
        ),
        Demonstration(prompt="Hi", answer="Hello.", line=2),
        Demonstration(prompt=[system], answer="Ok.", line=3),
    ]


# ---- bad input: one clear error naming the line, nothing written ----

GOOD = '{"prompt": "Hi", "completion": "Hello."}'


def conversation(*messages: tuple[str, str]) -> str:
    return json.dumps({"messages": [{"role": r, "content": c} for r, c in messages]})


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], r": no demonstrations \(the file is empty\)"),
        ([GOOD, '{"prompt": "Hi", "completion": "  "}'], r", line 2: the answer is empty"),
        ([conversation(("user", "Hi"), ("assistant", ""))], r", line 1: the answer is empty"),
        (
            [GOOD, conversation(("robot", "Hi"), ("assistant", "Hello."))],
            r", line 2: field 'messages', message 0: expected \{'role': one of",
        ),
        (
            ['{"prompt": "Hi", "completion": [{"role": "user", "content": "Hello."}]}'],
            r", line 1: field 'completion' must be a string or \[\{'role': 'assistant'",
        ),
        (
            [GOOD, GOOD, conversation(("user", "Hi"), ("assistant", "Hello."), ("user", "And?"))],
            r", line 3: no assistant answer: the last message .* not 'user'",
        ),
        ([conversation(("assistant", "Hello."))], r", line 1: no prompt before the assistant's"),
        ([GOOD, '{"prompt": "Hi", "answer": "Hello."}'], r", line 2: expected 'messages', or"),
        (
            [GOOD, json.dumps({"prompt": "Hi", "completion": "yes " * 40})],
            r", line 2: the demonstration is 95 tokens .* more than max_length \(32\)",
        ),
    ],
    ids=[
        "empty-file",
        "empty-completion",
        "empty-answer",
        "wrong-role",
        "completion-role",
        "no-assistant-answer",
        "no-prompt",
        "neither-format",
        "too-long",
    ],
)
def test_bad_demonstrations_are_refused_naming_the_line(
    tiny_model: str, tmp_path: Path, lines: list[str], message: str
) -> None:
    data = tmp_path / "demos.jsonl"
    data.write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    with pytest.raises(DataError, match=f"^{data}{message}"):
        train_sft(small_config(tiny_model, max_length=32), data, tmp_path / "out")
    assert list(tmp_path.iterdir()) == [data]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("base_model", "", "SFTTrainConfig.base_model is required"),
        ("batch_size", 0, "SFTTrainConfig.batch_size must be >= 1, got 0"),
        ("learning_rate", 0.0, "SFTTrainConfig.learning_rate must be > 0, got 0.0"),
        ("epochs", -1.0, "SFTTrainConfig.epochs must be > 0, got -1.0"),
        ("max_length", 4, "SFTTrainConfig.max_length must be >= 8, got 4"),
        ("eval_fraction", 1.0, r"SFTTrainConfig.eval_fraction must be in \[0, 1\), got 1.0"),
        ("lora_r", 0, "lora r must be positive, got 0"),
    ],
)
def test_config_validate_names_the_field_and_value(
    tiny_model: str, tmp_path: Path, field: str, value: object, message: str
) -> None:
    data = write_demonstrations(tmp_path / "demos.jsonl", 4)

    with pytest.raises(ValueError, match=f"^{message}$"):
        train_sft(small_config(tiny_model, **{field: value}), data, tmp_path / "out")
    assert list(tmp_path.iterdir()) == [data]


# ---- command line ----


def test_command_line(tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_demonstrations(tmp_path / "demos.jsonl", 8)
    args = ["--base", tiny_model, "--data", str(data), "--batch-size", "4", "--logging-steps", "1"]

    main(args + ["--out", str(tmp_path / "cli"), "--eval-fraction", "0"])

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [m["step"] for m in lines if "loss" in m] == [1, 2]
    assert lines[-1]["result"]["steps"] == 2
    assert lines[-1]["result"]["heldout_loss"] is None  # nothing held out
    assert (tmp_path / "cli" / "adapter_model.safetensors").is_file()

    with pytest.raises(SystemExit) as caught:
        main(args + ["--out", str(tmp_path / "cli2"), "--max-length", "8"])
    assert caught.value.code == 2
    assert "line 1: the demonstration is" in capsys.readouterr().err
    assert not (tmp_path / "cli2").exists()
