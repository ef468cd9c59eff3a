"""A running run's page in Chromium: its curves grow as the worker records metrics, without a
reload; a metric first reported live gets a figure among the other metrics; bookkeeping never
gets one."""

from __future__ import annotations

import pytest

from tests.browser.conftest import in_thread, screenshot
from training import services

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def ppo_row(step: int, **more: float) -> dict:
    """One PPO logging step, named as training/ml/ppo.py reports it."""
    return {
        "step": step,
        "episode": 8 * step,
        "objective/scores": 0.1 * step,
        "objective/rlhf_reward": 0.1 * step - 0.01,
        "objective/kl": 0.02 * step,
        "loss/policy": -0.01,
        "loss/value": 0.3 / step,
        "val/response_length": 10.0 + step,
        "elapsed_seconds": 2.0 * step,
        "eps": 4.0,
        **more,
    }


def points(page, metric: str) -> int:
    return int(page.locator(f'figure[data-metric="{metric}"]').get_attribute("data-points"))


def test_the_curves_of_a_running_ppo_run_grow_live(login, asgi_server, project, reviewer):
    run = services.run_create(project=project, kind="ppo", config={"total_episodes": 32})
    in_thread(services.run_start, run=run, worker="gpu-1")
    in_thread(services.run_record_metrics, run=run, values=ppo_row(1))
    page = login(reviewer)
    page.goto(f"{asgi_server}/p/{project.slug}/runs/{run.pk}/")
    page.wait_for_function("() => document.body.dataset.events === 'open'")
    page.evaluate("() => { window.__sameDocument = true; }")  # gone if the page reloads
    lead = page.locator("#charts > figure")
    assert lead.evaluate_all("fs => fs.map(f => f.dataset.metric)") == [
        "objective/scores",
        "objective/rlhf_reward",
        "objective/kl",
        "loss/policy",
        "loss/value",
        "val/response_length",
    ]
    assert points(page, "objective/scores") == 1
    assert page.locator("#more-curves").is_hidden()

    in_thread(services.run_record_metrics, run=run, values=ppo_row(2))
    page.wait_for_function(
        "() => document.querySelector('figure[data-metric=\"objective/scores\"]')"
        ".dataset.points === '2'"
    )
    in_thread(services.run_record_metrics, run=run, values=ppo_row(3, **{"policy/approxkl": 0.01}))
    page.wait_for_function(
        "() => document.querySelector('figure[data-metric=\"objective/kl\"]')"
        ".dataset.points === '3'"
    )

    assert [points(page, m) for m in ("objective/scores", "loss/value", "val/response_length")] == [
        3,
        3,
        3,
    ]
    assert page.locator("#progress").inner_text() == "24 of 32 episodes"
    page.locator("#more-curves > summary").click()  # the other metrics, unfolded
    screenshot(page, "run")
    assert page.locator("#more-curves > summary").inner_text() == "Other metrics (1)"
    assert page.locator("#more-charts > figure").evaluate_all(
        "fs => fs.map(f => [f.dataset.metric, f.dataset.points])"
    ) == [["policy/approxkl", "1"]]
    plotted = page.locator("figure[data-metric]").evaluate_all(
        "fs => fs.map(f => f.dataset.metric)"
    )
    assert [m for m in ("step", "episode", "elapsed_seconds", "eps") if m in plotted] == []
    assert page.evaluate("() => window.__sameDocument") is True
