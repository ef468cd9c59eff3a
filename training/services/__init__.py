"""Every write of the training app, one module per topic:

- `policies`: policy versions (the base, candidates, promotion, rollback);
- `snapshots`: the preference pairs of a project and the dataset snapshots made of them, and
  the snapshots of the demonstrations SFT trains on;
- `iterations`: the loop's iterations (start, advance, cancel, approve, reject, the human
  gate's decision);
- `schedules`: the cron schedule that starts them;
- `runs`: training runs from queued to their outcome, metrics, log, reaping;
- `artifact_store`: where artifacts are stored (the filesystem or an S3-compatible object
  store), publishing a finished one, and the local cache readers go through;
- `artifacts`: the rows artifacts become (reward models, SFT versions, completions);
- `health`: reward models' scores of the labels that arrived after they were trained;
- `recovery`: the loop after a fault: new comparisons when an iteration ends without a
  promotion, and the work a starting worker (or the beat) takes over from a dead one.

Callers import the package (`from training import services`); the names below are the
public interface.
"""

from training.services.artifact_store import (
    ArtifactCorruptError,
    ArtifactPathError,
    ArtifactStoreError,
    StoredArtifact,
    artifact_delete,
    artifact_exists,
    artifact_local,
    artifact_path,
    artifact_store,
    artifact_work_dir,
)
from training.services.artifacts import (
    generation_record,
    reward_model_register,
    sft_register,
)
from training.services.health import fresh_label_scores_record
from training.services.iterations import (
    IterationMoved,
    iteration_advance,
    iteration_approve,
    iteration_cancel,
    iteration_decline,
    iteration_human_gate_check,
    iteration_reject,
    iteration_start,
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
from training.services.schedules import (
    loop_schedule,
    loop_schedule_edits_audited,
    loop_schedule_set,
)
from training.services.snapshots import (
    ComparisonVerdict,
    comparison_verdicts,
    demonstration_snapshot_create,
    judge_snapshot_create,
    snapshot_create,
)

__all__ = [
    "LOG_TAIL_CHARS",
    "ArtifactCorruptError",
    "ArtifactPathError",
    "ArtifactStoreError",
    "StoredArtifact",
    "IterationMoved",
    "ComparisonVerdict",
    "artifact_delete",
    "artifact_exists",
    "artifact_local",
    "artifact_path",
    "artifact_store",
    "artifact_work_dir",
    "generation_record",
    "iteration_advance",
    "iteration_approve",
    "iteration_cancel",
    "iteration_decline",
    "iteration_human_gate_check",
    "iteration_reject",
    "iteration_start",
    "demonstration_snapshot_create",
    "judge_snapshot_create",
    "loop_schedule",
    "iterations_resume_lost",
    "loop_recover_at_worker_start",
    "loop_schedule_edits_audited",
    "loop_schedule_set",
    "policy_create_base",
    "policy_promote",
    "policy_register",
    "policy_rollback",
    "comparison_verdicts",
    "fresh_label_scores_record",
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
    "sft_register",
    "snapshot_create",
    "status_after_gates",
]
