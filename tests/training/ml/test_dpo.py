"""DPO (training/ml/dpo.py) on the tiny model; no database, no network."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.training.ml.conftest import LONG_PROMPTS, write_preferences
from tests.training.ml.test_sft import write_demonstrations
from training.ml.data import load_preferences, split_by_prompt
from training.ml.dpo import HELDOUT_FILE, DPOTrainConfig, build_dpo_trainer, train_dpo
from training.ml.errors import DataError, ModelNotFound
from training.ml.loading import encode_prompt, encode_response, load_causal_lm, load_tokenizer
from training.ml.ppo import METRICS_FILE, POLICY_FILE
from training.ml.sft import SFTTrainConfig, train_sft
from training.ml.trl_stage import answer_logprobs

MAX_LENGTH = 48  # the conftest's LONG_PROMPTS fill it alone: TRL drops those pairs


def small_config(base: str, **overrides: object) -> DPOTrainConfig:
    values: dict = dict(
        base_model=base,
        lora_r=8,
        lora_alpha=16,
        learning_rate=5e-3,
        epochs=3,
        batch_size=8,
        max_length=MAX_LENGTH,
        eval_fraction=0.25,
        logging_steps=1,
    )
    values.update(overrides)
    return DPOTrainConfig(**values)


@pytest.fixture(scope="module")
def dpo_run(tiny_model: str, preference_file: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("dpo") / "policy"
    seen: list[dict] = []
    result = train_dpo(small_config(tiny_model), preference_file, out, on_metrics=seen.append)
    return out, result, seen


@pytest.fixture(scope="module")
def sft_adapter(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dpo_sft")
    data = write_demonstrations(root / "demos.jsonl", 16)
    config = SFTTrainConfig(base_model=tiny_model, lora_r=8, learning_rate=5e-3, eval_fraction=0)
    train_sft(config, data, root / "sft")
    return root / "sft"


def trainer_on(config: DPOTrainConfig, preference_file: Path, scratch: Path):
    """The trainer train_dpo builds, on the shared preference file split as train_dpo splits it."""
    pairs = load_preferences(preference_file)
    train, heldout = split_by_prompt(pairs, eval_fraction=config.eval_fraction, seed=config.seed)
    tokenizer = load_tokenizer(config.base_model)
    return build_dpo_trainer(config, tokenizer, train, heldout, output_dir=scratch)


def logprobs(model, batch) -> torch.Tensor:
    """Answer log-probs of a DPOTrainer batch (chosen rows, then rejected rows): (2B,)."""
    return answer_logprobs(
        model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    )[0]


# ---- the run ----


def test_dpo_learns_a_planted_preference(dpo_run) -> None:
    _, result, seen = dpo_run

    assert (result["pairs"], result["train_pairs"], result["heldout_pairs"]) == (48, 36, 12)
    assert (result["pairs_dropped"], result["pairs_cut"]) == (LONG_PROMPTS, 0)
    first = next(m for m in seen if "loss" in m)
    # The policy starts exactly at the reference: every implicit reward 0, the loss log 2.
    assert first["rewards/accuracies"] == 0.0
    assert first["rewards/margins"] == 0.0
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)
    # Chosen answers are made of GOOD_WORDS, rejected ones of BAD_WORDS (conftest): after 15
    # steps every held-out pair is ranked right by its implicit reward (measured: 12 of 12).
    assert result["heldout_accuracy"] >= 0.9
    assert result["heldout_reward_margin"] > 0.2
    assert result["heldout_chosen_reward"] > 0 > result["heldout_rejected_reward"]
    assert result["heldout_logp_margin"] > result["heldout_logp_margin_before"] + 2.0
    assert result["train_accuracy"] == 1.0
    assert result["steps"] == 15  # 33 training pairs left: 5 batches, 3 epochs


def test_saved_folder_is_a_policy_with_its_heldout_scores(dpo_run, tiny_model: str) -> None:
    out, result, seen = dpo_run

    record = json.loads((out / POLICY_FILE).read_text())
    assert (record["kind"], record["base_model"], record["init_adapter"]) == (
        "dpo",
        tiny_model,
        None,
    )
    assert record["config"]["beta"] == 0.1
    assert [json.loads(line) for line in (out / METRICS_FILE).read_text().splitlines()] == seen
    assert seen[-1]["heldout_accuracy"] == result["heldout_accuracy"]

    rows = [json.loads(line) for line in (out / HELDOUT_FILE).read_text().splitlines()]
    assert len(rows) == result["heldout_pairs"] - sum(r["line"] <= LONG_PROMPTS for r in rows)
    assert sum(r["correct"] for r in rows) / len(rows) == result["heldout_accuracy"]
    for row in rows:
        assert row["chosen_reward"] == pytest.approx(
            0.1 * (row["chosen_logp"] - row["reference_chosen_logp"])
        )

    weights = load_file(out / "adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and all(w.abs().sum() > 0 for w in lora_b)  # parameters changed
    assert not [name for name in weights if ".ref." in name or "lora_" not in name]
    model, _ = load_causal_lm(tiny_model, adapter=out, device="cpu")  # as generate loads it
    assert list(model.peft_config) == ["default"]


# ---- the reference ----


def test_reference_logprobs_are_the_base_models_exactly(
    tiny_model: str, preference_file: Path, tmp_path: Path
) -> None:
    trainer = trainer_on(small_config(tiny_model, epochs=1), preference_file, tmp_path)
    before = trainer.evaluate()  # TRL's own held-out metrics
    trainer.train()
    after = trainer.evaluate()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    base, _ = load_causal_lm(tiny_model, device="cpu")

    plain = logprobs(base, batch)
    with trainer.model.disable_adapter():
        adapter_off = logprobs(trainer.model, batch)
    trl_reference = torch.cat(trainer.compute_ref_log_probs(trainer.model, batch))
    policy = logprobs(trainer.model, batch)

    assert before["eval_rewards/accuracies"] == 0.0
    assert after["eval_rewards/accuracies"] > before["eval_rewards/accuracies"]
    assert torch.equal(adapter_off, plain)
    assert torch.equal(trl_reference, plain)  # TRL's reference, its own log-softmax: the base
    assert (policy - plain).abs().max() > 0.1  # while the trained policy moved away


def test_from_an_sft_adapter_held_to_it_the_reference_is_that_adapter(
    tiny_model: str, sft_adapter: Path, preference_file: Path, tmp_path: Path
) -> None:
    config = small_config(
        tiny_model, init_adapter=str(sft_adapter), reference_adapter=str(sft_adapter), epochs=1
    )
    trainer = trainer_on(config, preference_file, tmp_path)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    sft, _ = load_causal_lm(tiny_model, adapter=sft_adapter, device="cpu")
    base, _ = load_causal_lm(tiny_model, device="cpu")
    expected = logprobs(sft, batch)

    start = logprobs(trainer.model, batch)
    trainer.train()
    trl_reference = torch.cat(trainer.compute_ref_log_probs(trainer.model, batch))

    assert torch.equal(start, expected)  # DPO starts from the SFT policy
    assert torch.equal(trl_reference, expected)  # and stays tied to it
    assert (expected - logprobs(base, batch)).abs().max() > 0.1  # which is not the base
    assert (logprobs(trainer.model, batch) - expected).abs().max() > 0.1  # the policy moved
    assert trainer.ref_model is None  # a frozen copy of the adapter, not a second model


def test_a_continued_adapter_is_held_to_the_base_model(
    tiny_model: str, sft_adapter: Path, preference_file: Path, tmp_path: Path
) -> None:
    config = small_config(tiny_model, init_adapter=str(sft_adapter), epochs=1)
    trainer = trainer_on(config, preference_file, tmp_path)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    sft, _ = load_causal_lm(tiny_model, adapter=sft_adapter, device="cpu")
    base, _ = load_causal_lm(tiny_model, device="cpu")

    start = logprobs(trainer.model, batch)
    trainer.train()
    trl_reference = torch.cat(trainer.compute_ref_log_probs(trainer.ref_model, batch))
    first = next(m for m in trainer.state.log_history if "rewards/margins" in m)

    assert torch.equal(start, logprobs(sft, batch))  # it starts where the adapter was
    assert torch.equal(trl_reference, logprobs(base, batch))  # and is held to the base
    assert (start - trl_reference).abs().max() > 0.1
    assert first["rewards/chosen"] != 0.0  # the first step's implicit rewards: not at the start


def test_a_continued_adapter_is_held_to_another_sft_adapter(
    tiny_model: str, sft_adapter: Path, dpo_run, preference_file: Path, tmp_path: Path
) -> None:
    policy = dpo_run[0]  # a DPO adapter from the base model, continued and held to SFT
    config = small_config(
        tiny_model, init_adapter=str(policy), reference_adapter=str(sft_adapter), epochs=1
    )
    trainer = trainer_on(config, preference_file, tmp_path)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    sft, _ = load_causal_lm(tiny_model, adapter=sft_adapter, device="cpu")
    continued, _ = load_causal_lm(tiny_model, adapter=policy, device="cpu")

    start = logprobs(trainer.model, batch)
    trainer.train()
    trl_reference = torch.cat(trainer.compute_ref_log_probs(trainer.ref_model, batch))

    assert torch.equal(start, logprobs(continued, batch))
    # the SFT adapter merged into a copy of the base: equal up to float rounding
    torch.testing.assert_close(trl_reference, logprobs(sft, batch), atol=1e-4, rtol=0)
    assert (start - trl_reference).abs().max() > 0.1


def test_heldout_rewards_of_a_continued_adapter_are_against_the_base(
    tiny_model: str, sft_adapter: Path, dpo_run, preference_file: Path, tmp_path: Path
) -> None:
    from_base = dpo_run[1]
    config = small_config(tiny_model, init_adapter=str(sft_adapter), epochs=1)

    result = train_dpo(config, preference_file, tmp_path / "out")

    # the same held-out pairs, scored under the same reference: the base model
    assert result["heldout_logp_margin_before"] == pytest.approx(
        from_base["heldout_logp_margin_before"], abs=1e-4
    )
    record = json.loads((tmp_path / "out" / POLICY_FILE).read_text())
    assert (record["init_adapter"], record["reference_adapter"]) == (str(sft_adapter), None)


def test_dpo_continues_an_sft_adapter_and_saves_one_adapter(
    tiny_model: str, sft_adapter: Path, tmp_path: Path
) -> None:
    data = write_preferences(tmp_path / "prefs.jsonl", pairs=16, seed=4)
    out = tmp_path / "dpo"
    config = small_config(
        tiny_model,
        init_adapter=str(sft_adapter),
        reference_adapter=str(sft_adapter),
        epochs=1,
        eval_fraction=0,
    )

    result = train_dpo(config, data, out)

    assert (result["steps"], result["heldout_accuracy"]) == (2, None)
    init = load_file(sft_adapter / "adapter_model.safetensors")
    trained = load_file(out / "adapter_model.safetensors")
    assert trained.keys() == init.keys()  # the SFT adapter, not a new one nor its reference
    assert not all(torch.equal(init[k], trained[k]) for k in init)
    assert json.loads((out / POLICY_FILE).read_text())["init_adapter"] == str(sft_adapter)
    assert (out / HELDOUT_FILE).read_text() == ""


def test_pairs_are_tokenized_as_the_other_stages_read_them(
    tiny_model: str, preference_file: Path, tmp_path: Path
) -> None:
    trainer = trainer_on(small_config(tiny_model), preference_file, tmp_path)
    tokenizer = trainer.processing_class
    pairs = {p.line: p for p in load_preferences(preference_file)}
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"]

    for row in trainer.train_dataset:
        pair = pairs[row["line"]]
        assert row["prompt_ids"] == encode_prompt(tokenizer, pair.prompt)
        # the answer, its end of turn, and the newline ChatML writes after it
        end = [tokenizer.eos_token_id, *newline]
        assert row["chosen_ids"] == encode_response(tokenizer, pair.chosen) + end
        assert row["rejected_ids"] == encode_response(tokenizer, pair.rejected) + end


# ---- losses ----


def test_ipo_differs_from_sigmoid_on_the_same_batch(
    tiny_model: str, preference_file: Path, tmp_path: Path
) -> None:
    losses = {}
    for loss_type in ("sigmoid", "ipo"):
        config = small_config(tiny_model, loss_type=loss_type, beta=0.2)
        trainer = trainer_on(config, preference_file, tmp_path / loss_type)
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
        with torch.no_grad():
            losses[loss_type] = trainer.compute_loss(trainer.model, batch).item()

    # At the start every log-ratio is 0: DPO's -log sigmoid(0) and IPO's (0 - 1/(2 beta))^2.
    assert losses["sigmoid"] == pytest.approx(math.log(2), abs=1e-6)
    assert losses["ipo"] == pytest.approx((1 / (2 * 0.2)) ** 2, abs=1e-5)


def test_ipo_trains_and_long_pairs_are_cut_and_counted(tiny_model: str, tmp_path: Path) -> None:
    data = write_preferences(tmp_path / "prefs.jsonl", pairs=16, seed=5)
    config = small_config(tiny_model, loss_type="ipo", epochs=1, eval_fraction=0, max_length=32)
    seen: list[dict] = []

    result = train_dpo(config, data, tmp_path / "ipo", on_metrics=seen.append)

    losses = [m["loss"] for m in seen if "loss" in m]
    assert losses[0] == pytest.approx(25.0, abs=1e-4)  # (1 / (2 * 0.1))^2
    assert losses[-1] < losses[0]
    assert result["steps"] == 2
    # prompt + answer + <|im_end|> + newline over 32 tokens: TRL cuts the answer's end
    tokenizer = load_tokenizer(tiny_model)
    lengths = [
        len(encode_prompt(tokenizer, p.prompt))
        + max(len(encode_response(tokenizer, a)) for a in (p.chosen, p.rejected))
        + 2
        for p in load_preferences(data)
    ]
    assert max(len(encode_prompt(tokenizer, p.prompt)) for p in load_preferences(data)) < 32
    assert result["pairs_cut"] == sum(n > 32 for n in lengths) > 0
    assert result["pairs_dropped"] == 0


# ---- bad input ----


def test_an_answer_with_a_special_token_is_refused(tiny_model: str, tmp_path: Path) -> None:
    data = tmp_path / "prefs.jsonl"
    data.write_text(
        '{"prompt": "Hi", "chosen": "yes", "rejected": "no"}\n'
        '{"prompt": "Hi", "chosen": "yes", "rejected": "no<|im_end|>"}\n',
        encoding="utf-8",
    )

    with pytest.raises(
        DataError, match=rf"^{data}, line 2: field 'rejected' contains the special token"
    ):
        train_dpo(small_config(tiny_model, eval_fraction=0), data, tmp_path / "out")
    assert list(tmp_path.iterdir()) == [data]


def test_pairs_whose_prompts_fill_max_length_leave_nothing_to_train(
    tiny_model: str, tmp_path: Path
) -> None:
    data = write_preferences(tmp_path / "prefs.jsonl", pairs=4, seed=6, long_prompts=4)

    with pytest.raises(DataError, match=rf"^{data}: every training pair's prompt fills max_length"):
        train_dpo(small_config(tiny_model, eval_fraction=0), data, tmp_path / "out")
    assert list(tmp_path.iterdir()) == [data]


def test_missing_adapter_folder_is_named(
    tiny_model: str, preference_file: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "no-adapter"

    with pytest.raises(ModelNotFound, match=str(missing)):
        train_dpo(
            small_config(tiny_model, init_adapter=str(missing)), preference_file, tmp_path / "o"
        )
    assert list(tmp_path.iterdir()) == []


def test_missing_reference_adapter_folder_is_named(
    tiny_model: str, sft_adapter: Path, preference_file: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "no-sft"
    config = small_config(tiny_model, init_adapter=str(sft_adapter), reference_adapter=str(missing))

    with pytest.raises(ModelNotFound, match=str(missing)):
        train_dpo(config, preference_file, tmp_path / "o")
    assert list(tmp_path.iterdir()) == []


def test_an_sft_reference_beside_a_continued_adapter_is_refused_on_a_4bit_base(
    tiny_model: str, sft_adapter: Path, dpo_run
) -> None:
    config = small_config(
        tiny_model,
        init_adapter=str(dpo_run[0]),
        reference_adapter=str(sft_adapter),
        load_in_4bit=True,
    )

    with pytest.raises(ValueError, match="^DPOTrainConfig.reference_adapter with load_in_4bit"):
        config.validate()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("beta", 0.0, "DPOTrainConfig.beta must be > 0, got 0.0"),
        ("loss_type", "hinge", r"DPOTrainConfig.loss_type must be one of \['sigmoid', 'ipo'\]"),
        ("gradient_accumulation_steps", 0, "DPOTrainConfig.gradient_accumulation_steps must be"),
        ("max_length", 7, "DPOTrainConfig.max_length must be >= 8, got 7"),
        ("lora_dropout", 1.0, r"lora dropout must be in \[0, 1\), got 1.0"),
        ("reference_adapter", "var/sft/1", "DPOTrainConfig.reference_adapter needs init_adapter"),
    ],
)
def test_config_validate_names_the_field_and_value(
    tiny_model: str, preference_file: Path, tmp_path: Path, field: str, value: object, message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{message}"):
        train_dpo(small_config(tiny_model, **{field: value}), preference_file, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
