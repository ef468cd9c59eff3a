"""TRL 1.12's PPOTrainer on the task that bench/ml.py gives Hone's PPO: the reference run.

Runs in the benchmark-only environment var/bench-trl112 (TRL 1.12 was the last release with
`trl.experimental.ppo`); never imported by Hone. bench/ml.py (part ppo-trl) starts it with:

- the same base model, the same prompts already tokenized by Hone (`encode_prompt`), the same
  reward model (Hone's reward adapter merged into a plain sequence classifier, read at the
  `<|im_end|>` that ends the answer, as Hone reads it);
- the same PPO settings (episodes, batch, epochs, response length, learning rate, temperature,
  KL coefficient, missing-EOS penalty, LoRA rank, seed).

Differences that belong to TRL and are kept as they are: the value model is a full copy of the
reward model trained in full (Hone: a LoRA adapter on the shared base), a linear learning-rate
decay, and the reference is the policy with its adapter disabled (as in Hone).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--reward", required=True, help="merged sequence-classifier folder")
    parser.add_argument("--prompt-ids", required=True, help="JSONL of {input_ids}")
    parser.add_argument("--out", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--config", required=True, help="JSON of the shared PPO settings")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    c = json.loads(args.config)

    import torch

    torch.set_num_threads(args.threads)
    import datasets
    import peft
    import transformers
    import trl
    from peft import LoraConfig
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        TrainerCallback,
    )
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(args.reward)  # Hone's: pad <|endoftext|>
    assert tokenizer.pad_token_id == 0 and tokenizer.eos_token == "<|im_end|>"
    tokenizer.padding_side = "left"  # prompts are generated from: left padding, as TRL's examples
    with open(args.prompt_ids, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    dataset = datasets.Dataset.from_dict({"input_ids": [r["input_ids"] for r in rows]})

    transformers.set_seed(c["seed"])
    policy = AutoModelForCausalLM.from_pretrained(args.base, dtype=torch.float32)
    policy.config.pad_token_id = tokenizer.pad_token_id
    policy.generation_config.pad_token_id = tokenizer.pad_token_id
    reward_model = AutoModelForSequenceClassification.from_pretrained(
        args.reward, num_labels=1, dtype=torch.float32
    )
    value_model = AutoModelForSequenceClassification.from_pretrained(
        args.reward, num_labels=1, dtype=torch.float32
    )
    for m in (reward_model, value_model):
        m.config.pad_token_id = tokenizer.pad_token_id

    config = PPOConfig(
        output_dir=args.out,
        total_episodes=c["total_episodes"],
        per_device_train_batch_size=c["rollout_batch_size"],
        local_rollout_forward_batch_size=c["rollout_batch_size"],
        num_mini_batches=c["num_mini_batches"],
        num_ppo_epochs=c["num_ppo_epochs"],
        response_length=c["response_length"],
        learning_rate=c["learning_rate"],
        temperature=c["temperature"],
        kl_coef=c["kl_coef"],
        missing_eos_penalty=c["missing_eos_penalty"],
        stop_token="eos",
        seed=c["seed"],
        num_sample_generations=0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=False,
        use_cpu=True,
        disable_tqdm=True,
    )
    history: list[dict] = []

    class Record(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN201
            if logs and "objective/scores" in logs:
                # the clock and the load, as bench/ml.py records them for Hone's run
                record = {
                    **logs,
                    "time": round(time.time(), 2),
                    "cpu": round(time.process_time(), 2),
                    "load1": round(os.getloadavg()[0], 2),
                }
                history.append(record)
                print(
                    {
                        k: record.get(k)
                        for k in ("episode", "objective/scores", "objective/kl", "load1")
                    },
                    flush=True,
                )

    trainer = PPOTrainer(
        args=config,
        processing_class=tokenizer,
        model=policy,
        ref_model=None,
        reward_model=reward_model,
        train_dataset=dataset,
        value_model=value_model,
        peft_config=LoraConfig(
            r=c["lora_r"],
            lora_alpha=c["lora_alpha"],
            lora_dropout=0.0,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        ),
        callbacks=[Record()],
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    episodes = history[-1]["episode"] if history else 0
    with open(args.result, "w", encoding="utf-8") as f:
        json.dump(
            {
                "trainer": f"trl {trl.__version__} experimental.ppo.PPOTrainer",
                "versions": {
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "peft": peft.__version__,
                },
                "train_seconds": round(seconds, 2),
                "seconds_per_episode": round(seconds / max(episodes, 1), 3),
                "episodes_per_second": round(episodes / seconds, 4),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "history": history,
            },
            f,
            indent=2,
        )


if __name__ == "__main__":
    main()
