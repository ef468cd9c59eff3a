"""Every write of the training app, one module per topic:

- `policies`: policy versions (the base, candidates, promotion, rollback);
- `snapshots`: the preference pairs of a project and the dataset snapshots made of them;
- `iterations`: the loop's iterations (start, advance, cancel, approve, reject, the human
  gate's decision) and the schedule that starts them;
- `runs`: training runs from queued to their outcome, metrics, log, reaping;
- `recovery`: the loop after a fault: new comparisons when an iteration ends without a
  promotion, and the work a starting worker (or the beat) takes over from a dead one;
- `artifacts`: where artifacts live and the rows they become.

Callers import the package (`from training import services`); the names below are the
public interface.
"""

from training.services.artifacts import (
    artifact_commit,
    artifact_path,
    generation_record,
    reward_model_register,
)
from training.services.iterations import (
    IterationMoved,
    iteration_advance,
    iteration_approve,
    iteration_cancel,
    iteration_decline,
    iteration_human_gate_check,
    iteration_reject,
    iteration_start,
    loop_schedule_set,
    status_after_gates,
)
from training.services.policies import (
    policy_create_base,
    policy_promote,
    policy_register,
    policy_rollback,
)
from training.services.recovery import (
    comparisons_replenish,
    iterations_resume_lost,
    loop_recover_at_worker_start,
    runs_lose_gone_workers,
    runs_resend_lost,
)
from training.services.runs import (
    LOG_TAIL_CHARS,
    run_cancel,
    run_create,
    run_fail,
    run_log,
    run_mark_cancelled,
    run_record_metrics,
    run_start,
    run_succeed,
    runs_lose,
    runs_reap_stale,
)
from training.services.snapshots import ComparisonVerdict, comparison_verdicts, snapshot_create

__all__ = [
    "LOG_TAIL_CHARS",
    "IterationMoved",
    "ComparisonVerdict",
    "artifact_commit",
    "artifact_path",
    "generation_record",
    "iteration_advance",
    "iteration_approve",
    "iteration_cancel",
    "iteration_decline",
    "iteration_human_gate_check",
    "iteration_reject",
    "iteration_start",
    "iterations_resume_lost",
    "loop_recover_at_worker_start",
    "loop_schedule_set",
    "policy_create_base",
    "policy_promote",
    "policy_register",
    "policy_rollback",
    "comparison_verdicts",
    "comparisons_replenish",
    "reward_model_register",
    "run_cancel",
    "run_create",
    "run_fail",
    "run_log",
    "run_mark_cancelled",
    "run_record_metrics",
    "run_start",
    "run_succeed",
    "runs_lose",
    "runs_lose_gone_workers",
    "runs_reap_stale",
    "runs_resend_lost",
    "snapshot_create",
    "status_after_gates",
]
