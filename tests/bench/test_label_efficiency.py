"""The label-efficiency benchmark's own logic (bench/label_efficiency.py): pairs, the held-out
split, the two orders and "labels needed to reach X". No model: the measurement itself is in
docs/benchmarks.md."""

from __future__ import annotations

import json

import pytest

from bench import label_efficiency as bench


def answer(prompt: str, text: str) -> bench.Answer:
    return bench.Answer([{"role": "user", "content": prompt}], text, 0.8, "test")


def test_labels_to_reach_interpolates_between_the_rounds_around_the_first_crossing():
    curve = [(32, 0.60), (64, 0.70), (96, 0.66), (128, 0.80)]

    assert bench.labels_to_reach(curve, 0.65) == pytest.approx(48.0)
    assert bench.labels_to_reach(curve, 0.70) == 64
    # 0.75 is first reached between 96 (0.66) and 128 (0.80), not at the earlier 0.70
    assert bench.labels_to_reach(curve, 0.75) == pytest.approx(96 + 32 * 0.09 / 0.14)
    assert bench.labels_to_reach(curve, 0.55) == 32  # already there at the first point
    assert bench.labels_to_reach(curve, 0.81) is None


def test_savings_compare_the_labels_each_strategy_needs_for_fifos_final_accuracy():
    fifo = [(32, 0.60), (64, 0.65), (96, 0.70), (128, 0.72)]
    uncertainty = [(32, 0.60), (64, 0.72), (96, 0.75), (128, 0.74)]

    row = bench.savings(fifo, uncertainty)

    assert row["target"] == 0.72
    assert row["labels_fifo"] == 128
    assert row["labels_uncertainty"] == 64
    assert row["saved"] == pytest.approx(0.5)
    assert bench.savings(uncertainty, fifo)["saved"] is None  # fifo never reaches 0.74
    # the same number of labels: nothing saved
    assert bench.savings(fifo, fifo)["saved"] == 0


def test_savings_at_a_given_level_and_the_levels_between_two_accuracies():
    fifo = [(32, 0.60), (64, 0.65), (96, 0.70), (128, 0.72)]
    uncertainty = [(32, 0.60), (64, 0.72), (96, 0.75), (128, 0.74)]

    row = bench.savings(fifo, uncertainty, 0.65)

    assert (row["target"], row["labels_fifo"]) == (0.65, 64)
    assert row["labels_uncertainty"] == pytest.approx(32 + 32 * 0.05 / 0.12)
    assert bench.levels_between(0.60, 0.72) == [0.65, 0.70]  # above the first, up to the last
    assert bench.levels_between(0.62, 0.70) == [0.65, 0.70]
    assert bench.levels_between(0.71, 0.74) == []


def test_mean_curve_keeps_the_label_counts_every_seed_has():
    mean = bench.mean_curve([[(32, 0.5), (64, 0.7)], [(32, 0.7), (64, 0.9), (96, 1.0)]])

    assert mean == [(32, pytest.approx(0.6)), (64, pytest.approx(0.8))]


def test_all_pairs_pairs_different_answers_of_one_prompt_and_judges_them():
    answers = [
        answer("P", "A short one."),
        answer("P", "A much longer answer than that."),
        answer("Q", "Same."),
        answer("Q", "Same."),
        answer("P", "Loud!"),
    ]

    pairs = bench.all_pairs(answers, "concise")

    key = json.dumps([{"content": "P", "role": "user"}])
    # Q's two answers are equal: no pair; P's three answers make three
    assert pairs == [
        bench.Pair(key, 0, 1, "a"),
        bench.Pair(key, 0, 4, "a"),  # 12 characters against 5, plus 20 for the "!"
        bench.Pair(key, 1, 4, "b"),  # 31 against 25
    ]


def test_heldout_split_holds_out_whole_prompts_and_is_the_same_every_time():
    answers = [answer(f"prompt {p}", f"answer {'x' * n}") for p in range(10) for n in range(3)]
    pairs = bench.all_pairs(answers, "concise")

    candidates, heldout = bench.heldout_split(pairs)

    assert sorted(candidates + heldout) == list(range(30))
    assert not {pairs[i].prompt for i in candidates} & {pairs[i].prompt for i in heldout}
    assert len(heldout) == 9  # 3 prompts of 3 pairs: the first whole prompts past 30%
    assert bench.heldout_split(list(reversed(pairs)))[1] == sorted(29 - i for i in heldout)


def test_fifo_takes_the_seeded_order_and_uncertainty_one_pair_per_prompt_per_pass():
    order = bench.fifo_order(range(10), seed=3)
    assert order == bench.fifo_order(range(10), seed=3)
    assert order != bench.fifo_order(range(10), seed=4)
    assert bench.pick_fifo(order, set(order[:2]), 3) == order[2:5]

    groups = [
        [(0, 0.9), (1, 0.95)],  # prompt 0: pair 1 is its most uncertain
        [(2, 0.2)],
        [(3, 0.99), (4, 0.1)],
    ]
    # one per prompt first (1, 3, 2 by uncertainty), then the rule again on what is left
    assert bench.pick_uncertain(groups, set(), 2) == [3, 1]
    assert bench.pick_uncertain(groups, set(), 4) == [3, 1, 2, 0]
    assert bench.pick_uncertain(groups, {3}, 2) == [1, 2]
    assert bench.pick_uncertain(groups, set(), 9) == [3, 1, 2, 0, 4]


def test_heldout_accuracy_counts_the_pairs_whose_chosen_answer_gets_more_reward():
    pairs = [
        bench.Pair("p", 0, 1, "a"),
        bench.Pair("p", 0, 2, "b"),
        bench.Pair("p", 1, 2, "tie"),
    ]

    right, judged, margin = bench.heldout_accuracy(pairs, {0: 1.0, 1: 0.5, 2: 0.0})

    assert (right, judged) == (1, 2)
    assert margin == pytest.approx((0.5 - 1.0) / 2)


def test_best_of_n_plays_the_reward_models_pick_against_the_other_answers_of_its_prompt():
    pairs = [
        bench.Pair("p", 0, 1, "a"),
        bench.Pair("p", 0, 2, "b"),
        bench.Pair("p", 1, 2, "tie"),
        bench.Pair("q", 3, 4, "b"),
    ]

    # p: answer 0 beats 1, loses to 2 (0.5); q: answer 3 loses to 4 (0.0)
    assert bench.best_of_n_win_rate(pairs, {0: 9.0, 1: 0.0, 2: 0.0, 3: 1.0, 4: 0.0}) == 0.25
    # p: answer 2 beats 0 and ties 1 (0.75); q: answer 4 wins (1.0)
    assert bench.best_of_n_win_rate(pairs, {0: 0.0, 1: 0.0, 2: 5.0, 3: 0.0, 4: 1.0}) == 0.875
    # equal rewards: the lowest index is the pick
    assert bench.best_of_n_win_rate(pairs, dict.fromkeys(range(5), 0.0)) == 0.25
    # the annotator's own pick is the ceiling
    wins = bench.annotator_wins(pairs)
    assert wins == {0: 1.0, 1: 0.5, 2: 1.5, 3: 0.0, 4: 1.0}
    assert bench.best_of_n_win_rate(pairs, wins) == 0.875


def test_the_report_gives_the_best_of_n_tables_where_the_run_recorded_them(tmp_path):
    run = tmp_path / "run.jsonl"
    setup = {
        "kind": "setup",
        "budget": 32,
        "answers": 8,
        "prompts": 2,
        "pairs": 6,
        "ties": 0,
        "candidate_pairs": 4,
        "candidate_prompts": 1,
        "heldout_pairs": 2,
        "heldout_prompts": 1,
        "taste": "concise",
        "seed_labels": 16,
        "batch": 16,
        "model": "top",
        "heldout_best_of_n_ceiling": 0.9,
    }
    records = [setup]
    for seed in (0, 1):
        for strategy in ("fifo", "uncertainty"):
            for labels, accuracy, best in ((16, 0.6, 0.5), (32, 0.7, 0.6)):
                lift = 0.1 if strategy == "uncertainty" and labels > 16 else 0.0
                records.append(
                    {
                        "kind": "round",
                        "seed": seed,
                        "strategy": strategy,
                        "labels": labels,
                        "heldout_accuracy": accuracy,
                        "heldout_best_of_n": best + lift,
                    }
                )
    run.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")

    text = bench.report(run)

    assert "Held-out accuracy against labels:" in text
    assert "Best-of-n win rate against the base against labels:" in text
    assert "the annotator's own pick 0.900" in text
    # fifo reaches 0.6 at 32 labels; uncertainty reaches it at 16 + 16 * 0.1 / 0.2 = 24
    assert "| mean curves | 0.600 | 32 | 24 | 25% |" in text
    # a run recorded before the measure existed: accuracy only
    old = [{k: v for k, v in r.items() if k != "heldout_best_of_n"} for r in records]
    run.write_text("".join(json.dumps(r) + "\n" for r in old), encoding="utf-8")
    assert "Best-of-n" not in bench.report(run)


def test_isotonic_pools_the_dips_of_a_curve_into_their_neighbours():
    curve = [(32, 0.60), (64, 0.70), (96, 0.66), (128, 0.80), (160, 0.78), (192, 0.76)]

    fitted = bench.isotonic(curve)

    assert [labels for labels, _ in fitted] == [32, 64, 96, 128, 160, 192]
    assert [round(a, 4) for _, a in fitted] == [0.60, 0.68, 0.68, 0.78, 0.78, 0.78]
    assert bench.isotonic(fitted) == fitted


def test_the_svg_draws_each_seed_and_the_mean_of_the_complete_seeds(tmp_path):
    from xml.etree import ElementTree

    run = tmp_path / "run.jsonl"
    records = [
        {"kind": "setup", "budget": 64, "answers": 8, "taste": "concise", "learning_rate": 1e-3}
    ]
    for seed, lift in ((0, 0.0), (1, 0.1)):
        for strategy in ("fifo", "uncertainty"):
            for labels, accuracy in ((16, 0.6), (32, 0.7), (64, 0.8)):
                gain = 0.05 if strategy == "uncertainty" and labels > 16 else 0.0
                records.append(
                    {
                        "kind": "round",
                        "seed": seed,
                        "strategy": strategy,
                        "labels": labels,
                        "heldout_accuracy": accuracy + lift + gain,
                    }
                )
    run.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")

    svg = ElementTree.fromstring(bench.svg_curves(run))

    lines = svg.findall("{http://www.w3.org/2000/svg}polyline")
    thick = [line for line in lines if line.get("stroke-width") == "2.5"]
    assert len(lines) == 6  # two seeds and one mean per strategy
    assert len(thick) == 2
    assert all(len(line.get("points").split()) == 3 for line in lines)
    assert "mean of 2 seeds" in ElementTree.tostring(svg, encoding="unicode")
