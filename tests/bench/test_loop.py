"""The loop benchmark's simulated demonstrations (bench/loop.py, --sft-demonstrations): what the
concise annotator writes. No model: the measurement is in docs/benchmarks.md."""

from __future__ import annotations

from bench import loop as bench
from feedback.preferences import judge


def test_the_annotator_writes_the_first_sentence_of_the_answer_it_likes_best():
    answers = [
        "Bees make honey from nectar. They also pollinate flowers, which matters a great deal.",
        "Bees are amazing insects! They live in hives and make honey for the winter months.",
    ]

    written = bench.demonstration_of(answers)

    assert written == "Bees make honey from nectar."
    # what it writes, it prefers to every answer it chose from
    assert all(judge("concise", written, a)[0] == "a" for a in answers)


def test_exclamation_marks_become_full_stops_and_a_short_opening_is_not_cut():
    assert bench.demonstration_of(["Yes! Bees are insects that make honey."]) == (
        "Yes. Bees are insects that make honey."
    )
    assert bench.demonstration_of(["  Tokyo  "]) == "Tokyo"


def test_the_brief_prompts_hold_out_whole_topics_as_the_demo_set_does():
    brief = bench.extra_prompts(bench.BRIEF_TEMPLATES)

    assert len(brief) == len(bench.TOPICS) * 4 == 112
    eval_texts = [r["prompt"][0]["content"] for r in brief if r["split"] == "eval"]
    assert len(eval_texts) == 32
    held_out = bench.TOPICS[-bench.EVAL_TOPICS :]
    assert all(any(topic in text for topic in held_out) for text in eval_texts)
    train_texts = [r["prompt"][0]["content"] for r in brief if r["split"] == "train"]
    assert not any(topic in text for topic in held_out for text in train_texts)
