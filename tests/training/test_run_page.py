"""A run's page as staff read it: the curves of its kind first, the other metrics folded away,
bookkeeping never plotted, its configuration and summary as tables."""

from __future__ import annotations

import json
import re

import pytest

from training import services

# One logging step of each stage, with the names training/ml reports them under.
PPO_ROW = {
    "step": 1,
    "episode": 8,
    "objective/kl": 0.02,
    "objective/kl_coef": 0.05,
    "objective/entropy": 30.5,
    "objective/non_score_reward": -0.001,
    "objective/scores": 0.4,
    "objective/rlhf_reward": 0.399,
    "policy/approxkl": 0.001,
    "policy/clipfrac": 0.0,
    "policy/entropy": 3.2,
    "loss/policy": -0.01,
    "loss/value": 0.3,
    "val/clipfrac": 0.0,
    "val/ratio": 1.0,
    "val/num_eos_tokens": 3,
    "val/response_length": 12.5,
    "elapsed_seconds": 4.2,
    "eps": 1.9,
}
PPO_LEAD = [
    "objective/scores",
    "objective/rlhf_reward",
    "objective/kl",
    "loss/policy",
    "loss/value",
    "val/response_length",
]
PPO_MORE = [
    "objective/entropy",
    "objective/kl_coef",
    "objective/non_score_reward",
    "policy/approxkl",
    "policy/clipfrac",
    "policy/entropy",
    "val/clipfrac",
    "val/num_eos_tokens",
    "val/ratio",
]
REWARD_ROW = {
    "step": 5,
    "loss": 0.69,
    "accuracy": 0.5,
    "margin": 0.01,
    "grad_norm": 1.2,
    "learning_rate": 1e-4,
    "num_tokens": 900,
    "epoch": 0.5,
}
DPO_ROW = {
    "step": 5,
    "loss": 0.69,
    "rewards/chosen": 0.01,
    "rewards/rejected": 0.0,
    "rewards/accuracies": 0.5,
    "rewards/margins": 0.01,
    "logps/chosen": -40.0,
    "logps/rejected": -41.0,
    "num_tokens": 900,
    "epoch": 0.5,
}
SFT_ROW = {"step": 5, "loss": 2.1, "mean_token_accuracy": 0.4, "entropy": 2.0, "epoch": 1.0}


def figures(page: str, container: str) -> list[str]:
    """The metrics of the figures in the page's element #container, in order."""
    inner = re.search(rf'id="{container}">(.*?)</div>', page, re.S)
    return re.findall(r'data-metric="([^"]+)"', inner.group(1))


def run_page(client, project, run) -> str:
    return client.get(f"/p/{project.slug}/runs/{run.pk}/").content.decode()


@pytest.fixture
def staff(client, reviewer):
    client.force_login(reviewer)
    return client


def test_a_ppo_run_leads_with_score_reward_kl_losses_and_length(project, staff):
    run = services.run_create(project=project, kind="ppo", config={})
    services.run_start(run=run, worker="w")
    services.run_record_metrics(run=run, values=PPO_ROW)

    page = run_page(staff, project, run)

    assert figures(page, "charts") == PPO_LEAD
    assert figures(page, "more-charts") == PPO_MORE
    assert "Score (reward model) <code>objective/scores</code>" in page
    assert "RLHF reward (score − KL penalty) <code>objective/rlhf_reward</code>" in page
    assert "<summary>Other metrics (<span data-count>9</span>)</summary>" in page
    assert '<details id="more-curves">' in page


def test_a_running_ppo_run_without_metrics_shows_its_leading_panels_empty(project, staff):
    run = services.run_create(project=project, kind="ppo", config={})
    services.run_start(run=run, worker="w")

    page = run_page(staff, project, run)

    assert figures(page, "charts") == PPO_LEAD
    assert figures(page, "more-charts") == []
    assert '<details id="more-curves" hidden>' in page


@pytest.mark.parametrize(
    ("kind", "rows", "lead", "more"),
    [
        ("reward", [REWARD_ROW], ["loss", "accuracy"], ["grad_norm", "learning_rate", "margin"]),
        (
            "reward",
            [REWARD_ROW, {"step": 10, "heldout_accuracy": 0.75, "heldout_pairs": 8}],
            ["loss", "accuracy", "heldout_accuracy"],
            ["grad_norm", "learning_rate", "margin"],
        ),
        (
            "dpo",
            [DPO_ROW],
            ["loss", "rewards/accuracies", "rewards/margins", "logps/chosen"],
            ["logps/rejected", "rewards/chosen", "rewards/rejected"],
        ),
        (
            "sft",
            [{"step": 0, "heldout_loss": 2.5, "heldout_perplexity": 12.2}, SFT_ROW],
            ["loss", "mean_token_accuracy", "heldout_loss"],
            ["entropy", "heldout_perplexity"],
        ),
        ("generate", [{"step": 4, "answers_done": 4, "answers_total": 8}], [], []),
    ],
)
def test_each_kind_of_run_leads_with_its_own_curves(project, staff, kind, rows, lead, more):
    run = services.run_create(project=project, kind=kind, config={})
    services.run_start(run=run, worker="w")
    for row in rows:
        services.run_record_metrics(run=run, values=row)

    page = run_page(staff, project, run)

    assert (figures(page, "charts"), figures(page, "more-charts")) == (lead, more)


def test_bookkeeping_is_never_plotted(project, staff):
    run = services.run_create(project=project, kind="ppo", config={})
    services.run_start(run=run, worker="w")
    services.run_record_metrics(run=run, values=PPO_ROW)

    page = run_page(staff, project, run)

    plotted = figures(page, "charts") + figures(page, "more-charts")
    assert [k for k in ("step", "episode", "elapsed_seconds", "eps") if k in plotted] == []
    plan = json.loads(re.search(r'<script id="curve-plan"[^>]*>(.*?)</script>', page).group(1))
    assert {"step", "episode", "elapsed_seconds", "eps"} <= set(plan["hidden"])  # live rows too


def test_configuration_and_summary_are_tables(project, staff):
    config = {
        "snapshot": 3,
        "base_model": "<b>tiny</b>",
        "learning_rate": 1e-05,
        "kl_coef": 0.1234567891,
        "bf16": None,
        "gradient_checkpointing": False,
        "lora": {"r": 4, "target_modules": ["q_proj", "v_proj"]},
    }
    run = services.run_create(project=project, kind="reward", config=config)
    services.run_start(run=run, worker="w")

    running = run_page(staff, project, run)
    services.run_succeed(run=run, summary={"train_loss": 0.5, "steps": 10, "heldout_pairs": 0})
    done = run_page(staff, project, run)

    rows = re.findall(
        r'<tr><th scope="row">([^<]*)</th><td>([^<]*)</td></tr>',
        running.split('id="configuration"')[1],
    )
    assert rows == [
        ("base_model", "&lt;b&gt;tiny&lt;/b&gt;"),
        ("bf16", "null"),
        ("gradient_checkpointing", "false"),
        ("kl_coef", "0.123457"),
        ("learning_rate", "1e-05"),
        ("lora.r", "4"),
        ("lora.target_modules", "[&quot;q_proj&quot;, &quot;v_proj&quot;]"),
        ("snapshot", "3"),
    ]
    assert "No summary yet: the run writes one when it ends." in running
    summary = done.split('id="summary"')[1].split("</section>")[0]
    assert re.findall(r'<tr><th scope="row">([^<]*)</th><td>([^<]*)</td></tr>', summary) == [
        ("heldout_pairs", "0"),
        ("steps", "10"),
        ("train_loss", "0.5"),
    ]
    assert "{}" not in summary and "No summary yet" not in done


def test_a_failed_run_without_summary_says_so(project, staff):
    run = services.run_create(project=project, kind="ppo", config={})
    services.run_start(run=run, worker="w")
    services.run_fail(run=run, error="boom")

    page = run_page(staff, project, run)

    assert "This run left no summary." in page
