"""GPU work: turn rows into files, call `training.ml`, record the results through services.

Runs inside a Celery worker on the `gpu` queue. `training.ml` (torch, transformers, peft,
TRL) is imported inside each function, so that web processes never pay for it. An artifact
only becomes visible (moved into place, then registered) once it is complete.

- `runner`: how any job runs as its TrainingRun row (heartbeat, cancel, outcome, config);
- `generation`: the active policy answers prompts, the pairs become comparisons;
- `iteration`: the loop iteration's steps, a state machine on its row;
- `arena`: both answers of an arena battle, streamed to the annotator;
- `health`: reward models score the labels that arrived after they were trained.
"""

from training.jobs.arena import arena_generate
from training.jobs.generation import generation_prompts, generation_queue, generation_run
from training.jobs.health import fresh_agreement_check, fresh_labels_score, reward_health_score
from training.jobs.iteration import iteration_run
from training.jobs.runner import (
    HUMAN_GATE_PRIORITY,
    Heartbeat,
    RunCancelled,
    WaitingForHumans,
    stage_config,
)

__all__ = [
    "HUMAN_GATE_PRIORITY",
    "Heartbeat",
    "RunCancelled",
    "WaitingForHumans",
    "arena_generate",
    "fresh_agreement_check",
    "fresh_labels_score",
    "generation_prompts",
    "generation_queue",
    "generation_run",
    "iteration_run",
    "reward_health_score",
    "stage_config",
]
