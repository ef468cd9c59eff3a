"""Shortcut control: a reward model on an annotator whose taste is confounded with length.

The annotator (feedback/preferences.py, "specific") prefers the answer with a concrete detail,
a number or a named thing, and cares nothing for length; but in the data, as in real answers,
the specific answer is usually the longer one. A reward model can then learn "longer is
better" instead of "specific is better", and is wrong exactly where the specific answer is the
shorter. This script trains SmolLM2-135M-Instruct reward models (LoRA, through
training.ml.reward, the loop's own code) on the same pairs, seed and split twice, with
`length_control` off and on, and reports held-out accuracy overall, on the pairs whose chosen
answer is the shorter and on those where it is the longer, how often each model picks the
shorter answer, the learned length coefficient, and time per step.

    nice -n 10 .venv/bin/python bench/length.py --base var/models/smollm2-135m-instruct --seeds 0,1

The text is constructed here, not sampled: each prompt asks about a topic; the two answers of a
pair state the same fact, one with a concrete detail ("It was first described in 1838.") and
one without ("It was first described long ago."), among filler sentences that carry no detail.
The filler decides which answer is longer: the specific answer gets more of it in
`--confound` of the pairs (0.75 by default), fewer in the rest. Whole topics are held out, so
the held-out pairs ask about topics, and carry numbers and names, the model never saw.

Writes bench/out/length.json (one record per seed and setting) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out"

TOPICS = [
    "bees",
    "owls",
    "whales",
    "ants",
    "wolves",
    "penguins",
    "octopuses",
    "sharks",
    "crows",
    "frogs",
    "bats",
    "snails",
    "parrots",
    "horses",
    "camels",
    "otters",
    "spiders",
    "salmon",
    "deer",
    "eagles",
    "volcanoes",
    "glaciers",
    "deserts",
    "rivers",
    "caves",
    "islands",
    "rainbows",
    "tides",
    "clouds",
    "lightning",
    "earthquakes",
    "coral reefs",
    "forests",
    "meadows",
    "lakes",
    "comets",
    "the moon",
    "the sun",
    "planets",
    "stars",
    "bread",
    "cheese",
    "honey",
    "coffee",
    "tea",
    "rice",
    "chocolate",
    "apples",
    "olives",
    "salt",
    "bridges",
    "trains",
    "bicycles",
    "clocks",
    "maps",
    "telescopes",
    "compasses",
    "lighthouses",
    "canals",
    "windmills",
    "libraries",
    "museums",
    "chess",
    "the piano",
    "violins",
    "drums",
    "poetry",
    "paper",
    "glass",
    "steel",
    "silk",
    "cotton",
    "wool",
    "ink",
    "candles",
    "soap",
    "mirrors",
    "umbrellas",
    "kites",
    "sailing",
    "skiing",
    "gardening",
    "knitting",
    "pottery",
    "weaving",
    "recycling",
    "vaccines",
    "the heart",
    "sleep",
    "dreams",
    "memory",
    "laughter",
    "yawning",
    "fingerprints",
    "the brain",
    "bones",
    "muscles",
    "teeth",
    "the skin",
    "the eyes",
]

# A fact about the topic with slots; each slot is filled with a concrete detail (a number or a
# name, which the "specific" taste counts) or a vague phrase, drawn anew for every answer, so
# that a model has to notice details, not remember phrases.
FACTS = [
    "{when}, a book about {t} was written by {by}.",
    "There are {count} kinds of {t} {where}.",
    "{who} once counted {count} {t} in one day.",
    "People {where} have studied {t} since {since}.",
    "The oldest record of {t} is {age} old.",
    "{when}, a festival about {t} was held {where}.",
    "About {share} of people say they like {t}.",
    "{who} gave a famous talk on {t} {where}.",
]
NAMES = [
    "Marie Curie",
    "Charles Darwin",
    "Ada Lovelace",
    "Jane Goodall",
    "Isaac Newton",
    "Rachel Carson",
    "Mary Anning",
    "Gregor Mendel",
    "Carl Linnaeus",
    "Lise Meitner",
    "Alan Turing",
    "Rosalind Franklin",
    "Nikola Tesla",
    "Hypatia",
    "Ibn Sina",
    "Emmy Noether",
]
PLACES = [
    "Norway",
    "Kenya",
    "Peru",
    "Japan",
    "Chile",
    "Iceland",
    "Portugal",
    "Vietnam",
    "Canada",
    "Morocco",
    "Austria",
    "Mexico",
    "Finland",
    "Egypt",
    "Brazil",
    "Scotland",
    "Nepal",
    "Ghana",
]
VAGUE = {
    "when": ["Long ago", "Some years ago", "A while back", "Once", "In the old days"],
    "who": ["A scholar", "A researcher", "An old teacher", "A curious writer", "A local expert"],
    "by": ["a scholar", "a researcher", "an old teacher", "a curious writer", "a local expert"],
    "where": ["abroad", "up north", "in a small town", "in the mountains", "far away"],
    "count": ["many", "a few", "several", "countless", "a handful of"],
    "since": ["long ago", "the old days", "ancient times", "their grandparents' days"],
    "age": ["very", "quite", "surprisingly", "remarkably"],
    "share": ["half", "a third", "a quarter", "two thirds"],
}


def concrete(slot: str, rng: random.Random) -> str:
    return {
        "when": lambda: f"In {rng.randint(1200, 2020)}",
        "who": lambda: rng.choice(NAMES),
        "by": lambda: rng.choice(NAMES),
        "where": lambda: f"in {rng.choice(PLACES)}",
        "count": lambda: str(rng.randint(3, 900)),
        "since": lambda: str(rng.randint(1200, 2000)),
        "age": lambda: f"{rng.randint(40, 9000)} years",
        "share": lambda: f"{rng.randint(5, 95)} percent",
    }[slot]()


FILLER = [
    "It is a subject many people enjoy.",
    "There is a lot to learn about it.",
    "People have talked about it for a long time.",
    "It shows up in many stories and songs.",
    "Some find it surprising at first.",
    "It is worth a closer look.",
    "Most people know a little about it.",
    "It can be explained in simple words.",
    "Children often ask questions about it.",
    "It has changed how some people think.",
    "Many books mention it in passing.",
    "It is more interesting than it sounds.",
]
QUESTIONS = [
    "Tell me about {t}.",
    "What should I know about {t}?",
    "Give me a short note on {t}.",
]


def fact(topic: str, rng: random.Random, p_concrete: float) -> str:
    template = rng.choice(FACTS)
    slots = {
        slot: concrete(slot, rng) if rng.random() < p_concrete else rng.choice(VAGUE[slot])
        for slot in VAGUE
    }
    return template.format(t=topic, **slots)


def answer(facts: list[str], filler: list[str], rng: random.Random) -> str:
    sentences = list(filler)
    for sentence in facts:
        sentences.insert(rng.randint(0, len(sentences)), sentence)
    return " ".join(sentences)


def build_pairs(
    *, topics: list[str], pairs_per_topic: int, confound: float, seed: int = 0
) -> tuple[list[dict], dict]:
    """Preference pairs judged by the "specific" annotator (ties drawn again); the data seed is
    fixed, so every run trains on the same text. Each answer states one or two facts whose
    slots are concrete or vague at random; then the answer with more details gets the more
    filler in `confound` of the pairs, the fewer in the rest."""
    from feedback.preferences import PREFERENCES

    specific = PREFERENCES["specific"]
    rng = random.Random(seed)
    rows: list[dict] = []
    for topic in topics:
        question = rng.choice(QUESTIONS).format(t=topic)
        for _ in range(pairs_per_topic):
            while True:
                a_facts = [fact(topic, rng, 0.4) for _ in range(rng.randint(1, 2))]
                b_facts = [fact(topic, rng, 0.4) for _ in range(rng.randint(1, 2))]
                a_score = specific(" ".join(a_facts))
                b_score = specific(" ".join(b_facts))
                if a_score != b_score:
                    break
            better, worse = (a_facts, b_facts) if a_score > b_score else (b_facts, a_facts)
            few, more = rng.randint(0, 1), rng.randint(2, 3)
            picks = rng.sample(FILLER, few + more)
            if rng.random() < confound:
                better_filler, worse_filler = picks[:more], picks[more:]
            else:
                better_filler, worse_filler = picks[:few], picks[few:]
            chosen = answer(better, better_filler, rng)
            rejected = answer(worse, worse_filler, rng)
            assert specific(chosen) > specific(rejected)  # filler carries no detail
            prompt = [{"role": "user", "content": question}]
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows, {"pairs": len(rows), "confound": confound}


def train_once(args, data: Path, seed: int, control: bool) -> dict[str, Any]:
    from training.ml.reward import RewardTrainConfig, train_reward

    config = RewardTrainConfig(
        base_model=args.base,
        learning_rate=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_length=args.max_length,
        max_batch_tokens=args.batch_size * 2 * args.max_length,
        eval_fraction=args.eval_fraction,
        logging_steps=5,
        seed=seed,
        length_control=control,
    )
    out = OUT / f"rm-length-{seed}-{'on' if control else 'off'}"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    logs: list[dict[str, Any]] = []
    cpu_at_log: dict[int, float] = {}  # process CPU seconds at each logged step

    def cpu_now() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def on_metrics(metrics: dict[str, Any]) -> None:
        logs.append(metrics)
        if "loss" in metrics:  # progress, on stderr
            cpu_at_log[metrics["step"]] = cpu_now()
            print(
                f"  step {metrics['step']}: loss {metrics['loss']:.3f}, "
                f"accuracy {metrics['accuracy']:.2f}",
                file=sys.stderr,
                flush=True,
            )

    cpu = cpu_now()
    started = time.monotonic()
    result = train_reward(config, data, out, on_metrics=on_metrics)
    wall = time.monotonic() - started
    runtime = next(m["train_runtime"] for m in logs if "train_runtime" in m)
    first, last = min(cpu_at_log), max(cpu_at_log)  # steady training steps, loading left out
    keep = [
        "train_pairs",
        "heldout_pairs",
        "heldout_accuracy",
        "heldout_accuracy_chosen_shorter",
        "heldout_accuracy_chosen_longer",
        "heldout_accuracy_same_length",
        "heldout_pairs_chosen_shorter",
        "heldout_pairs_chosen_longer",
        "heldout_pairs_same_length",
        "heldout_picks_shorter",
        "heldout_labels_pick_shorter",
        "train_labels_pick_shorter",
        "length_effective_pairs",
        "steps",
        "train_loss",
    ]
    return {
        "seed": seed,
        "length_control": control,
        **{k: result.get(k) for k in keep},
        "train_runtime_s": runtime,
        "seconds_per_step": round(runtime / result["steps"], 3),
        "cpu_s_per_step": round((cpu_at_log[last] - cpu_at_log[first]) / (last - first), 2),
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu_now() - cpu, 1),
    }


def fmt(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(records: list[dict]) -> str:
    lines = [
        "| seed | length control | held-out accuracy | chosen shorter | chosen longer | "
        "model picks shorter (labels) | effective train pairs | CPU s / step | CPU s in all |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in records:
        n = r["heldout_pairs"]
        ns, nl = r["heldout_pairs_chosen_shorter"], r["heldout_pairs_chosen_longer"]
        effective = r["length_effective_pairs"] if r["length_control"] else r["train_pairs"]
        lines.append(
            f"| {r['seed']} | {'on' if r['length_control'] else 'off'} "
            f"| **{fmt(r['heldout_accuracy'])}** ({round(r['heldout_accuracy'] * n)}/{n}) "
            f"| {fmt(r['heldout_accuracy_chosen_shorter'])} "
            f"({round(r['heldout_accuracy_chosen_shorter'] * ns)}/{ns}) "
            f"| {fmt(r['heldout_accuracy_chosen_longer'])} "
            f"({round(r['heldout_accuracy_chosen_longer'] * nl)}/{nl}) "
            f"| {fmt(r['heldout_picks_shorter'])} ({fmt(r['heldout_labels_pick_shorter'])}) "
            f"| {effective:.0f} of {r['train_pairs']} | {r['cpu_s_per_step']:.1f} "
            f"| {r['cpu_s']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="var/models/smollm2-135m-instruct")
    parser.add_argument("--seeds", default="0,1", help="training seeds (split, head, order)")
    parser.add_argument("--topics", type=int, default=90, help=f"of the {len(TOPICS)} topics")
    parser.add_argument("--pairs-per-topic", type=int, default=3)
    parser.add_argument(
        "--confound",
        type=float,
        default=0.8,
        help="share of pairs whose specific answer gets the more filler",
    )
    parser.add_argument("--eval-fraction", type=float, default=0.45)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--settings", default="off,on", help="length_control: off, on or both")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    rows, data_info = build_pairs(
        topics=TOPICS[: args.topics], pairs_per_topic=args.pairs_per_topic, confound=args.confound
    )
    data = OUT / "length_pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(json.dumps({"data": data_info, "path": str(data)}), flush=True)

    records = []
    started = time.monotonic()
    for seed in [int(s) for s in args.seeds.split(",")]:
        for setting in args.settings.split(","):
            record = train_once(args, data, seed, setting == "on")
            records.append(record)
            print(json.dumps(record), flush=True)
    summary: dict[str, Any] = {}
    for setting in (False, True):
        runs = [r for r in records if r["length_control"] == setting]
        if runs:
            summary["on" if setting else "off"] = {
                key: statistics.fmean(r[key] for r in runs if r[key] is not None)
                for key in (
                    "heldout_accuracy",
                    "heldout_accuracy_chosen_shorter",
                    "heldout_accuracy_chosen_longer",
                    "heldout_picks_shorter",
                    "cpu_s_per_step",
                )
                if any(r[key] is not None for r in runs)
            }
    report = {
        "args": vars(args),
        "data": data_info,
        "records": records,
        "mean": summary,
        "total_wall_s": round(time.monotonic() - started, 1),
        "cpu_s": round(sum(r["cpu_s"] for r in records), 1),
    }
    (OUT / "length.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(table(records))
    print(json.dumps({"mean": summary, "cpu_s": report["cpu_s"]}))


if __name__ == "__main__":
    main()
