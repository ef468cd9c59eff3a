from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.training.ml.conftest import LONG_PROMPTS, REWARD_MAX_LENGTH, write_preferences
from training.ml.data import PreferencePair, load_preferences, split_by_prompt
from training.ml.errors import DataError, ModelNotFound
from training.ml.loading import encode_prompt, encode_response, load_tokenizer
from training.ml.packed_pairs import (
    TokenBudgetBatchSampler,
    collate_packed_pairs,
    pack_pair,
    packed_pair_rewards,
    token_budget_batches,
)
from training.ml.reward import (
    RewardScorer,
    RewardTrainConfig,
    effective_pairs,
    encode_for_reward,
    length_weights,
    pair_metrics,
    pair_sums,
    process_share,
    train_reward,
)

# ---- the trained model ranks held-out pairs right ----


def test_reward_model_ranks_heldout_pairs(trained_reward: tuple[Path, dict, list[dict]]) -> None:
    _, result, _ = trained_reward

    assert result["heldout_accuracy"] >= 0.9
    assert result["pairs"] == 48
    assert result["train_pairs"] + result["heldout_pairs"] == 48
    assert result["heldout_pairs"] >= 12  # whole prompts held out until 25% of the pairs are
    assert (
        result["heldout_pairs_chosen_shorter"]
        + result["heldout_pairs_chosen_longer"]
        + result["heldout_pairs_same_length"]
        == result["heldout_pairs"]
    )
    assert result["heldout_pairs_chosen_shorter"] > 0
    assert result["heldout_pairs_chosen_longer"] > 0


def test_long_prompts_are_cut_from_the_left_and_counted(
    trained_reward: tuple[Path, dict, list[dict]],
) -> None:
    _, result, _ = trained_reward

    assert result["prompts_truncated"] == LONG_PROMPTS
    assert result["responses_truncated"] == 0


def test_lora_weights_changed_and_score_head_saved(
    trained_reward: tuple[Path, dict, list[dict]],
) -> None:
    out, _, _ = trained_reward
    weights = load_file(out / "adapter_model.safetensors")
    lora_b = {name: w for name, w in weights.items() if "lora_B" in name}

    # peft starts every lora_B at zero: a non-zero one was trained
    assert lora_b
    assert all(w.abs().sum() > 0 for w in lora_b.values())
    assert [name for name in weights if "score" in name] == ["base_model.model.score.weight"]


def test_metrics_stream_every_logging_step(trained_reward: tuple[Path, dict, list[dict]]) -> None:
    _, result, metrics = trained_reward
    training_logs = [m for m in metrics if "loss" in m]

    assert [m["step"] for m in training_logs] == list(range(1, result["steps"] + 1))
    assert {"loss", "accuracy", "margin", "learning_rate"} <= set(training_logs[0])
    assert metrics[-1]["heldout_accuracy"] == result["heldout_accuracy"]


def test_saved_folder_describes_the_reward_model(
    trained_reward: tuple[Path, dict, list[dict]], tiny_model: str
) -> None:
    out, _, _ = trained_reward
    info = json.loads((out / "hone_reward.json").read_text())

    assert info["format"] == "hone-reward-v1"
    assert info["base_model"] == tiny_model
    assert info["max_length"] == REWARD_MAX_LENGTH
    assert (info["eos_token"], info["pad_token"]) == ("<|im_end|>", "<|endoftext|>")
    assert (out / "tokenizer.json").is_file()
    assert not list(out.parent.glob(".rm.*"))  # the work folder is gone


def test_scorer_on_saved_folder_matches_the_in_memory_model(
    trained_reward: tuple[Path, dict, list[dict]], tiny_model: str, preference_file: Path
) -> None:
    out, _, _ = trained_reward
    pairs = {pair.line: pair for pair in load_preferences(preference_file)}
    heldout = [json.loads(line) for line in (out / "heldout.jsonl").read_text().splitlines()]
    scorer = RewardScorer.load(tiny_model, out)

    chosen = scorer.score(
        [pairs[row["line"]].prompt for row in heldout],
        [pairs[row["line"]].chosen for row in heldout],
        batch_size=12,
    )
    rejected = scorer.score(
        [pairs[row["line"]].prompt for row in heldout],
        [pairs[row["line"]].rejected for row in heldout],
        batch_size=12,
    )

    # heldout.jsonl was scored by the in-memory model right after training
    assert chosen == [row["chosen_score"] for row in heldout]
    assert rejected == [row["rejected_score"] for row in heldout]


# ---- the one formatting function ----


def test_reward_input_is_prompt_then_answer_then_end_of_turn(tiny_model: str) -> None:
    tokenizer = load_tokenizer(tiny_model)

    encoded = encode_for_reward(tokenizer, "Hi", "yes good", max_length=64)

    assert encoded.input_ids == (
        encode_prompt(tokenizer, "Hi") + encode_response(tokenizer, "yes good") + [2]
    )
    assert (encoded.prompt_cut, encoded.response_cut) == (0, 0)


def test_reward_input_cuts_the_prompt_from_the_left(tiny_model: str) -> None:
    tokenizer = load_tokenizer(tiny_model)
    prompt_ids = encode_prompt(tokenizer, "tell me about the sea " * 10)
    answer_ids = encode_response(tokenizer, "yes good")

    encoded = encode_for_reward(tokenizer, "tell me about the sea " * 10, "yes good", max_length=20)

    kept = 20 - len(answer_ids) - 1
    assert encoded.input_ids == prompt_ids[-kept:] + answer_ids + [2]
    assert encoded.prompt_cut == len(prompt_ids) - kept
    assert encoded.response_cut == 0


def test_reward_input_cuts_an_overlong_answer_from_the_right(tiny_model: str) -> None:
    tokenizer = load_tokenizer(tiny_model)
    answer_ids = encode_response(tokenizer, "yes good " * 20)

    encoded = encode_for_reward(tokenizer, "Hi", "yes good " * 20, max_length=10)

    assert encoded.input_ids == answer_ids[:9] + [2]
    assert encoded.response_cut == len(answer_ids) - 9


# ---- margins ----


def test_margin_column_trains(tiny_model: str, tmp_path: Path) -> None:
    data = write_preferences(tmp_path / "prefs.jsonl", pairs=8, seed=1)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[1]["margin"] = 1.5  # only some rows have one: the others count as 0
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = RewardTrainConfig(
        base_model=tiny_model, lora_r=4, epochs=1, batch_size=4, eval_fraction=0
    )

    result = train_reward(config, data, tmp_path / "rm")

    assert (result["train_pairs"], result["heldout_pairs"], result["steps"]) == (8, 0, 2)
    assert result["heldout_accuracy"] is None


# ---- bad input: one clear error, nothing written ----

GOOD = '{"prompt": "Hi", "chosen": "yes", "rejected": "no"}'


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", r"no preference pairs \(the file is empty\)"),
        (f"{GOOD}\n{{not json\n", r"line 2: malformed JSON"),
        (f'{GOOD}\n{{"prompt": "Hi", "chosen": "yes"}}\n', r"line 2: missing field 'rejected'"),
        (
            f'{GOOD}\n\n{{"prompt": "Hi", "chosen": "same", "rejected": "same"}}\n',
            r"line 3: 'chosen' and 'rejected' are identical",
        ),
        (
            f'{GOOD}\n{{"prompt": [{{"role": "robot", "content": "x"}}], "chosen": "a", "rejected": "b"}}\n',
            r"line 2: field 'prompt', message 0",
        ),
        (
            '{"prompt": "Hi", "chosen": "a", "rejected": "b", "margin": "big"}\n',
            r"line 1: field 'margin' must be a finite number",
        ),
    ],
    ids=["empty", "malformed", "missing-field", "identical", "bad-role", "bad-margin"],
)
def test_bad_data_raises_one_error_naming_file_and_line(
    tiny_model: str, tmp_path: Path, content: str, message: str
) -> None:
    data = tmp_path / "prefs.jsonl"
    data.write_text(content, encoding="utf-8")
    out = tmp_path / "rm"

    with pytest.raises(DataError, match=f"^{data}(, )?.*{message}"):
        train_reward(RewardTrainConfig(base_model=tiny_model), data, out)
    assert list(tmp_path.iterdir()) == [data]


def test_missing_model_folder_raises_naming_the_path(tmp_path: Path, preference_file: Path) -> None:
    missing = tmp_path / "no-model"

    with pytest.raises(ModelNotFound, match=str(missing)):
        train_reward(RewardTrainConfig(base_model=str(missing)), preference_file, tmp_path / "rm")
    assert list(tmp_path.iterdir()) == []


def test_missing_reward_folder_raises_naming_the_path(tiny_model: str, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match=str(tmp_path / "rm")):
        RewardScorer.load(tiny_model, tmp_path / "rm")


# ---- the held-out split ----


def test_split_keeps_each_prompt_on_one_side_whatever_the_order() -> None:
    pairs = [
        PreferencePair(prompt=f"p{i % 5}", chosen="a", rejected=f"b{i}", margin=None, line=i + 1)
        for i in range(20)
    ]

    train, heldout = split_by_prompt(pairs, eval_fraction=0.25, seed=0)
    train_reversed, heldout_reversed = split_by_prompt(pairs[::-1], eval_fraction=0.25, seed=0)

    assert {p.prompt for p in train}.isdisjoint({p.prompt for p in heldout})
    assert (len(train), len(heldout)) == (12, 8)  # whole prompts of 4 pairs until >= 5 pairs
    assert {p.line for p in heldout_reversed} == {p.line for p in heldout}


# ---- batching under a token budget ----


def test_token_budget_batches_use_every_pair_once_and_stay_under_budget() -> None:
    lengths = [5, 40, 12, 33, 7, 50, 21, 18, 9, 44, 30, 26, 3, 48, 15, 11]

    for epoch in range(3):
        batches = token_budget_batches(lengths, max_pairs=4, max_tokens=200, seed=0, epoch=epoch)

        assert sorted(i for batch in batches for i in batch) == list(range(16))
        assert all(len(b) * max(lengths[i] for i in b) <= 200 for b in batches)
        assert all(len(b) <= 4 for b in batches)


def test_token_budget_batches_group_similar_lengths() -> None:
    lengths = [10, 100, 11, 101, 12, 102, 13, 103]

    batches = token_budget_batches(lengths, max_pairs=4, max_tokens=10_000, seed=0, epoch=0)

    assert sorted(sorted(b) for b in batches) == [[0, 2, 4, 6], [1, 3, 5, 7]]


def test_token_budget_batches_change_order_with_the_epoch_only() -> None:
    lengths = [8] * 12

    first = token_budget_batches(lengths, max_pairs=3, max_tokens=1000, seed=0, epoch=0)
    again = token_budget_batches(lengths, max_pairs=3, max_tokens=1000, seed=0, epoch=0)
    second = token_budget_batches(lengths, max_pairs=3, max_tokens=1000, seed=0, epoch=1)

    assert first == again
    assert first != second
    assert sorted(map(sorted, first)) != sorted(map(sorted, second))  # new groups, not only order


def test_a_pair_over_the_budget_gets_a_batch_of_its_own() -> None:
    batches = token_budget_batches([4, 120, 4], max_pairs=8, max_tokens=100, seed=0, epoch=0)

    assert sorted(batches) == [[0, 2], [1]]


def test_sampler_yields_a_new_epoch_on_each_pass() -> None:
    sampler = TokenBudgetBatchSampler([6] * 10, max_pairs=2, max_tokens=100, seed=3)

    assert len(sampler) == 5
    first, second = list(sampler), list(sampler)

    assert first == token_budget_batches([6] * 10, max_pairs=2, max_tokens=100, seed=3, epoch=0)
    assert second == token_budget_batches([6] * 10, max_pairs=2, max_tokens=100, seed=3, epoch=1)


def test_training_steps_follow_the_token_budget(tiny_model: str, tmp_path: Path) -> None:
    data = write_preferences(tmp_path / "prefs.jsonl", pairs=12, seed=2)
    config = RewardTrainConfig(
        base_model=tiny_model,
        lora_r=4,
        epochs=1,
        batch_size=12,
        max_length=32,
        max_batch_tokens=64,  # one packed pair (shared prompt + two answers) per step
        eval_fraction=0,
    )

    result = train_reward(config, data, tmp_path / "rm")

    assert (result["train_pairs"], result["steps"]) == (12, 12)


def test_without_a_budget_batches_are_fixed_size(tiny_model: str, tmp_path: Path) -> None:
    data = write_preferences(tmp_path / "prefs.jsonl", pairs=12, seed=2)
    config = RewardTrainConfig(
        base_model=tiny_model,
        lora_r=4,
        epochs=1,
        batch_size=4,
        max_batch_tokens=None,
        eval_fraction=0,
    )

    result = train_reward(config, data, tmp_path / "rm")

    assert result["steps"] == 3


def test_budget_below_one_pair_is_refused(tiny_model: str, tmp_path: Path) -> None:
    config = RewardTrainConfig(base_model=tiny_model, max_length=64, max_batch_tokens=100)

    with pytest.raises(
        ValueError, match=r"max_batch_tokens must hold one pair .*\(>= 128\), got 100"
    ):
        train_reward(config, tmp_path / "prefs.jsonl", tmp_path / "rm")
    assert list(tmp_path.iterdir()) == []


# ---- packed pairs: the shared prompt computed once, the same rewards ----


def test_pack_pair_shares_the_common_prefix_and_keeps_positions() -> None:
    packed = pack_pair([5, 6, 7, 8, 2], [5, 6, 9, 2])

    assert packed.input_ids == [5, 6, 7, 8, 2, 9, 2]
    assert packed.position_ids == [0, 1, 2, 3, 4, 2, 3]
    assert (packed.shared, packed.chosen_end, packed.rejected_end) == (2, 4, 6)


def test_pack_pair_keeps_each_reward_token_out_of_the_shared_part() -> None:
    packed = pack_pair([5, 6, 2], [5, 6, 2, 7, 2])  # chosen is a prefix of rejected

    assert packed.shared == 2
    assert packed.input_ids == [5, 6, 2, 2, 7, 2]
    assert (packed.chosen_end, packed.rejected_end) == (2, 5)


def test_packed_mask_keeps_the_answers_apart() -> None:
    batch = collate_packed_pairs(
        [pack_pair([5, 6, 7, 2], [5, 6, 8, 8, 2]), pack_pair([5, 7, 2], [5, 8, 2])],
        pad_token_id=0,
    )
    mask = batch["attention_mask"][:, 0].int().tolist()

    assert batch["input_ids"].tolist() == [[5, 6, 7, 2, 8, 8, 2], [5, 7, 2, 8, 2, 0, 0]]
    assert mask[0] == [
        [1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0],
        [1, 1, 0, 0, 1, 0, 0],  # rejected's first token: the prompt and itself
        [1, 1, 0, 0, 1, 1, 0],
        [1, 1, 0, 0, 1, 1, 1],
    ]
    assert mask[1][3] == [1, 0, 0, 1, 0, 0, 0]
    assert mask[1][5] == [0, 0, 0, 0, 0, 1, 0]  # padding sees itself only
    assert batch["position_ids"].tolist()[1][:5] == [0, 1, 2, 1, 2]
    assert batch["real_tokens"].item() == 12


def test_packed_rewards_equal_the_rewards_of_separate_sequences(
    trained_reward: tuple[Path, dict, list[dict]], tiny_model: str, preference_file: Path
) -> None:
    import torch

    out, _, _ = trained_reward
    scorer = RewardScorer.load(tiny_model, out)
    pairs = load_preferences(preference_file)[:6]
    rows = [
        (
            encode_for_reward(scorer.tokenizer, p.prompt, p.chosen, REWARD_MAX_LENGTH).input_ids,
            encode_for_reward(scorer.tokenizer, p.prompt, p.rejected, REWARD_MAX_LENGTH).input_ids,
        )
        for p in pairs
    ]
    batch = collate_packed_pairs([pack_pair(c, r) for c, r in rows], pad_token_id=0)

    with torch.no_grad():
        chosen, rejected = packed_pair_rewards(scorer.model, batch)

    assert chosen.tolist() == pytest.approx(scorer.score_ids([c for c, _ in rows]), abs=1e-5)
    assert rejected.tolist() == pytest.approx(scorer.score_ids([r for _, r in rows]), abs=1e-5)


# ---- the training loop ----


def test_pair_metrics_by_hand() -> None:
    import torch

    chosen = torch.tensor([2.0, 0.5, -1.0])
    rejected = torch.tensor([1.0, 1.5, -3.0])
    losses = torch.tensor([0.3, 1.2, 0.6])
    expected = {
        "loss": 0.7,
        "accuracy": 2 / 3,
        "margin": (1.0 - 1.0 + 2.0) / 3,
        "min_reward": -3.0,
        "mean_reward": 1.0 / 6,
        "max_reward": 2.0,
    }

    whole = pair_metrics([pair_sums(chosen, rejected, losses)])
    # the same batch in three processes' shares, one of them empty
    shares = [(0, 2), (2, 2), (2, 3)]
    split = pair_metrics([pair_sums(chosen[a:b], rejected[a:b], losses[a:b]) for a, b in shares])

    assert whole == pytest.approx(expected)
    assert split == pytest.approx(expected)


def test_process_shares_cover_a_batch_once() -> None:
    assert [process_share([5, 6, 7], rank, 2) for rank in range(2)] == [[5, 6], [7]]
    assert [process_share([5], rank, 3) for rank in range(3)] == [[5], [], []]
    assert [process_share([1, 2, 3, 4], rank, 2) for rank in range(2)] == [[1, 2], [3, 4]]


def test_gradient_accumulation_sums_batches_into_one_step(tiny_model: str, tmp_path: Path) -> None:
    data = write_preferences(tmp_path / "prefs.jsonl", pairs=12, seed=2)
    config = RewardTrainConfig(
        base_model=tiny_model,
        lora_r=4,
        batch_size=12,
        max_length=32,
        max_batch_tokens=64,  # one pair per batch: 12 batches
        gradient_accumulation_steps=4,
        eval_fraction=0,
        logging_steps=1,
    )
    metrics: list[dict] = []

    result = train_reward(config, data, tmp_path / "rm", on_metrics=metrics.append)

    assert result["steps"] == 3
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2, 3]


def test_activation_checkpointing_trains_the_same_weights(tiny_model: str, tmp_path: Path) -> None:
    data = write_preferences(tmp_path / "prefs.jsonl", pairs=16, seed=3)
    results = {}
    for checkpointing in (False, True):
        config = RewardTrainConfig(
            base_model=tiny_model,
            lora_r=4,
            learning_rate=5e-3,
            batch_size=4,
            eval_fraction=0,
            gradient_checkpointing=checkpointing,
        )
        out = tmp_path / f"rm-{checkpointing}"
        results[checkpointing] = (
            train_reward(config, data, out),
            load_file(out / "adapter_model.safetensors"),
        )

    (plain, plain_weights), (checkpointed, checkpointed_weights) = results[False], results[True]
    assert checkpointed["steps"] == plain["steps"] == 4
    assert checkpointed["train_loss"] == pytest.approx(plain["train_loss"], abs=1e-6)
    assert checkpointed_weights.keys() == plain_weights.keys()
    assert all(
        (checkpointed_weights[name] - w).abs().max() < 1e-5 for name, w in plain_weights.items()
    )


# ---- length: the held-out split and length control ----


def test_heldout_report_counts_what_the_rows_say(
    trained_reward: tuple[Path, dict, list[dict]], tiny_model: str, preference_file: Path
) -> None:
    out, result, _ = trained_reward
    tokenizer = load_tokenizer(tiny_model)
    pairs = {pair.line: pair for pair in load_preferences(preference_file)}
    rows = [json.loads(line) for line in (out / "heldout.jsonl").read_text().splitlines()]

    def tokens(pair: PreferencePair, answer: str) -> int:
        return encode_for_reward(tokenizer, pair.prompt, answer, REWARD_MAX_LENGTH).answer_tokens

    lengths = [(tokens(pairs[r["line"]], pairs[r["line"]].chosen), r) for r in rows]
    lengths = [(c, tokens(pairs[r["line"]], pairs[r["line"]].rejected), r) for c, r in lengths]
    shorter = [r for c, j, r in lengths if c < j]
    longer = [r for c, j, r in lengths if c > j]
    picked_shorter = [r["correct"] for r in shorter] + [not r["correct"] for r in longer]

    assert result["heldout_pairs_chosen_shorter"] == len(shorter) > 0
    assert result["heldout_pairs_chosen_longer"] == len(longer) > 0
    assert result["heldout_accuracy_chosen_shorter"] == sum(r["correct"] for r in shorter) / len(
        shorter
    )
    assert result["heldout_accuracy_chosen_longer"] == sum(r["correct"] for r in longer) / len(
        longer
    )
    assert result["heldout_picks_shorter"] == sum(picked_shorter) / len(picked_shorter)
    assert result["heldout_labels_pick_shorter"] == len(shorter) / (len(shorter) + len(longer))
    assert result["length_control"] is False
    assert "length_effective_pairs" not in result


def test_answer_tokens_count_the_answer_kept_and_its_end_of_turn(tiny_model: str) -> None:
    tokenizer = load_tokenizer(tiny_model)
    answer_ids = encode_response(tokenizer, "yes good " * 20)

    whole = encode_for_reward(tokenizer, "Hi", "yes good", max_length=64)
    cut = encode_for_reward(tokenizer, "Hi", "yes good " * 20, max_length=10)

    assert whole.answer_tokens == len(encode_response(tokenizer, "yes good")) + 1
    assert cut.answer_tokens == 10 == len(answer_ids[:9]) + 1


def test_length_weights_by_hand() -> None:
    # (chosen, rejected) answer tokens: 3 pairs won by the longer, 1 by the shorter, 1 tie
    weights = length_weights([(9, 4), (6, 5), (20, 10), (3, 8), (7, 7)])

    assert weights == [4 / 6, 4 / 6, 4 / 6, 4 / 2, 1.0]
    assert sum(weights[:3]) == sum(weights[3:4])  # the two lengths weigh the same
    assert sum(weights) == 5  # all pairs as much as unweighted
    assert effective_pairs(weights) == pytest.approx(25 / (3 * 4 / 9 + 4 + 1))
    assert effective_pairs([1.0] * 7) == 7


def test_length_weights_when_only_one_length_ever_wins() -> None:
    assert length_weights([(9, 4), (6, 5), (7, 7)]) == [0.0, 0.0, 1.0]
    assert length_weights([(2, 4), (1, 5)]) == [0.0, 0.0]
    assert length_weights([(3, 3)]) == [1.0]


def test_length_control_needs_the_packed_loop(tiny_model: str, tmp_path: Path) -> None:
    config = RewardTrainConfig(base_model=tiny_model, max_batch_tokens=None, length_control=True)

    with pytest.raises(ValueError, match=r"^length_control needs Hone's packed training loop"):
        train_reward(config, tmp_path / "prefs.jsonl", tmp_path / "rm")
    assert list(tmp_path.iterdir()) == []


FILLER_WORDS = ["a", "is", "and", "or", "cat", "tea", "rice", "sea", "dog"]


def write_length_labels(path: Path, *, pairs: int, longer_wins: float, seed: int) -> Path:
    """Labels that say nothing but length: both answers are drawn from the same words, one
    2-6 words longer, and the longer one is chosen in `longer_wins` of the pairs."""
    import random

    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(pairs):
            n, extra = rng.randint(2, 6), rng.randint(2, 6)
            longer = "so " + " ".join(rng.choice(FILLER_WORDS) for _ in range(n + extra))
            shorter = "so " + " ".join(rng.choice(FILLER_WORDS) for _ in range(n))
            chosen, rejected = (
                (longer, shorter) if rng.random() < longer_wins else (shorter, longer)
            )
            row = {"prompt": f"Question {i}: tell me.", "chosen": chosen, "rejected": rejected}
            f.write(json.dumps(row) + "\n")
    return path


def test_with_length_control_labels_that_favour_length_teach_no_length(
    reward_config: RewardTrainConfig, tmp_path: Path
) -> None:
    from dataclasses import replace

    data = write_length_labels(tmp_path / "prefs.jsonl", pairs=160, longer_wins=0.8, seed=0)

    plain = train_reward(replace(reward_config, seed=0), data, tmp_path / "plain")
    controlled = train_reward(
        replace(reward_config, seed=0, length_control=True), data, tmp_path / "controlled"
    )

    assert plain["train_labels_pick_shorter"] == controlled["train_labels_pick_shorter"] < 0.25
    # without control the model learns "longer is better" and picks the longer answer
    assert plain["heldout_picks_shorter"] <= 0.1
    # with it, which answer it prefers is no longer a matter of length
    assert 0.25 <= controlled["heldout_picks_shorter"] <= 0.75
    assert abs(controlled["heldout_margin"]) < plain["heldout_margin"] / 4
    assert (plain["length_control"], controlled["length_control"]) == (False, True)
    assert "length_effective_pairs" not in plain
    assert 0 < controlled["length_effective_pairs"] < controlled["train_pairs"]


def test_with_length_control_what_the_labels_prefer_besides_length_is_learned(
    reward_config: RewardTrainConfig, preference_file: Path, tmp_path: Path
) -> None:
    from dataclasses import replace

    config = replace(reward_config, length_control=True)

    result = train_reward(config, preference_file, tmp_path / "rm")

    # GOOD_WORDS over BAD_WORDS, lengths drawn independently (conftest.write_preferences)
    assert result["heldout_accuracy"] >= 0.9
    assert result["heldout_accuracy_chosen_shorter"] >= 0.8


def test_length_control_refuses_labels_that_only_ever_prefer_one_length(
    tiny_model: str, tmp_path: Path
) -> None:
    data = write_length_labels(tmp_path / "prefs.jsonl", pairs=12, longer_wins=1.0, seed=0)
    config = RewardTrainConfig(base_model=tiny_model, length_control=True, eval_fraction=0)

    with pytest.raises(
        DataError,
        match=r"length control leaves no pair to learn from: the chosen answer is the longer one "
        r"in every training pair, and no pair has answers of equal length",
    ):
        train_reward(config, data, tmp_path / "rm")
    assert list(tmp_path.iterdir()) == [data]
