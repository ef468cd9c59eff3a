from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.ml.conftest import write_prompts
from training.ml.errors import DataError, ModelNotFound
from training.ml.evaluate import EvaluateConfig, evaluate, repetition_rate

PROMPTS = [
    "What is the capital of France?",
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
    "Tell me about the sea.",
    "Why is the sky blue?",
    "Name a colour.",
]


@pytest.fixture
def prompts_file(tmp_path: Path) -> Path:
    return write_prompts(tmp_path / "prompts.jsonl", PROMPTS)


def config(tiny_model: str, reward_dir: Path, **overrides: object) -> EvaluateConfig:
    settings: dict[str, object] = {"num_prompts": 4, "max_new_tokens": 10, "num_examples": 2}
    settings.update(overrides)
    return EvaluateConfig(base_model=tiny_model, reward_model=str(reward_dir), **settings)  # type: ignore[arg-type]


def test_candidate_equal_to_incumbent_wins_half(
    tiny_model: str, trained_reward: tuple, policy_adapters: dict[str, Path], prompts_file: Path
) -> None:
    perturbed = str(policy_adapters["perturbed"])
    progress: list[tuple[int, int]] = []

    report = evaluate(
        config(
            tiny_model, trained_reward[0], candidate_adapter=perturbed, incumbent_adapter=perturbed
        ),
        prompts_file,
        on_progress=lambda done, total: progress.append((done, total)),
    )

    assert (report["prompts"], report["win_rate"]) == (4, 0.5)
    assert (report["wins"], report["ties"], report["losses"]) == (0, 4, 0)
    assert report["candidate"] == report["incumbent"]
    assert report["kl_to_base_mean"] > 0  # a perturbed adapter is not the base
    assert progress[0] == (0, 20)
    assert progress[-1] == (20, 20)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)


def test_kl_is_zero_for_the_base_and_for_a_fresh_adapter(
    tiny_model: str, trained_reward: tuple, policy_adapters: dict[str, Path], prompts_file: Path
) -> None:
    base = evaluate(config(tiny_model, trained_reward[0]), prompts_file)
    fresh = evaluate(
        config(tiny_model, trained_reward[0], candidate_adapter=str(policy_adapters["zero"])),
        prompts_file,
    )

    assert (base["kl_to_base_mean"], base["kl_to_base_max"]) == (0.0, 0.0)
    assert (fresh["kl_to_base_mean"], fresh["kl_to_base_max"]) == (0.0, 0.0)
    assert fresh["win_rate"] == 0.5  # a zero adapter answers exactly like the base


def test_the_kl_to_a_reference_adapter_is_reported_beside_the_kl_to_the_base(
    tiny_model: str, trained_reward: tuple, policy_adapters: dict[str, Path], prompts_file: Path
) -> None:
    perturbed, zero = str(policy_adapters["perturbed"]), str(policy_adapters["zero"])
    plain = evaluate(
        config(tiny_model, trained_reward[0], candidate_adapter=perturbed), prompts_file
    )
    itself = evaluate(
        config(
            tiny_model, trained_reward[0], candidate_adapter=perturbed, reference_adapter=perturbed
        ),
        prompts_file,
    )
    zero_reference = evaluate(
        config(tiny_model, trained_reward[0], candidate_adapter=perturbed, reference_adapter=zero),
        prompts_file,
    )

    assert "kl_to_reference_mean" not in plain
    # Held to itself, a candidate is 0 from its reference; the KL to the base is unchanged.
    assert (itself["kl_to_reference_mean"], itself["kl_to_reference_max"]) == (0.0, 0.0)
    assert itself["kl_to_base_mean"] == plain["kl_to_base_mean"] > 0
    # A zero adapter is the base: the two KLs agree.
    assert zero_reference["kl_to_reference_mean"] == zero_reference["kl_to_base_mean"]


def test_report_numbers_are_in_range(
    tiny_model: str, trained_reward: tuple, policy_adapters: dict[str, Path], prompts_file: Path
) -> None:
    report = evaluate(
        config(tiny_model, trained_reward[0], candidate_adapter=str(policy_adapters["perturbed"])),
        prompts_file,
    )

    assert 0.0 <= report["win_rate"] <= 1.0
    assert report["wins"] + report["ties"] + report["losses"] == 4
    for side in ("candidate", "incumbent"):
        stats = report[side]
        assert 0 <= stats["length_median"] <= stats["length_max"] <= 10
        for rate in ("truncated_rate", "empty_rate", "repetition_rate"):
            assert 0.0 <= stats[rate] <= 1.0
    assert len(report["examples"]) == 2
    assert set(report["examples"][0]) == {
        "prompt",
        "candidate",
        "incumbent",
        "candidate_reward",
        "incumbent_reward",
    }


def test_repetition_rate_counts_repeated_ngrams() -> None:
    assert repetition_rate([[1, 2, 3, 4, 5]]) == 0.0
    assert repetition_rate([[1, 2, 3, 1, 2, 3]]) == 0.25  # (1,2,3) again, of 4 trigrams
    assert repetition_rate([[7, 7, 7, 7, 7]]) == 2 / 3
    assert repetition_rate([[1, 2]]) == 0.0


def test_missing_reward_folder_is_named_before_any_work(
    tiny_model: str, tmp_path: Path, prompts_file: Path
) -> None:
    missing = tmp_path / "no-reward"

    with pytest.raises(ModelNotFound, match=str(missing)):
        evaluate(EvaluateConfig(base_model=tiny_model, reward_model=str(missing)), prompts_file)


def test_bad_prompts_file_names_the_line(
    tiny_model: str, trained_reward: tuple, tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "ok"}\n{"prompt": ""}\n', encoding="utf-8")

    with pytest.raises(DataError, match=f"{prompts}, line 2: field 'prompt' is empty"):
        evaluate(config(tiny_model, trained_reward[0]), prompts)
