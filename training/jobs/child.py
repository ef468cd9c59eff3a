"""A training stage (or a generation or evaluation) as a child process the worker supervises.

The worker writes the stage's spec (`training.ml.job`), launches it with accelerate (one
process, or N data-parallel ones, or what an accelerate config file says: DDP, FSDP,
DeepSpeed) in a process group of its own, and while it runs:

- reads the events file that the job's rank 0 appends to, and records each metrics report on
  the run (the heartbeat thread goes on beating for the worker);
- on a cancel request, terminates the whole process group (SIGTERM, then SIGKILL after
  `HONE_JOB_TERMINATE_SECONDS`) and the run ends cancelled;
- when the job exits: its result, or a failed run with the job's message (bad input) or its
  exit status and last log lines; never a hang: the job dies with the worker too (it watches
  the worker's pid).

Generation and evaluation run the same way, in one process each (`Launch()`), so a worker's own
process never holds a model: the scoring of labels by reward models (health, uncertainty) is
the exception, short and on one device.

`HONE_TRAINING_JOBS=inline` runs the same stage functions inside the worker instead (the tests
on one small model, where a child's imports would cost more than the training).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from feedback.models import Project
from feedback.training_config import LAUNCH_STAGES, launch_errors
from training import services
from training.jobs.runner import WORKER_NAME, Heartbeat, JobFailed, metrics_sink
from training.models import TrainingRun

POLL_SECONDS = 0.5
LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class Launch:
    """How a stage's job is launched: processes, and an accelerate config file (or none)."""

    processes: int = 1
    accelerate_config: str | None = None

    def described(self) -> str:
        text = f"{self.processes} process{'es' if self.processes > 1 else ''}"
        return text + (f", {self.accelerate_config}" if self.accelerate_config else "")


def launch_of(project: Project, stage: str) -> Launch:
    """The project's launch settings for a stage: `training_config.launch`, where a stage's
    own object (`launch.ppo`) overrides the shared values. Checked again here (the project's
    validation names the same problems when the settings are saved)."""
    raw = (project.training_config or {}).get("launch", {})
    errors = launch_errors(raw)
    if errors:
        raise ValidationError(errors)
    values = {k: v for k, v in raw.items() if k not in LAUNCH_STAGES}
    values.update(raw.get(stage, {}))
    return Launch(**values)


def stage_train(
    *,
    run: TrainingRun,
    heartbeat: Heartbeat,
    stage: str,
    config: Any,
    data: str | Path,
    out: str | Path,
    launch: Launch,
    report: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run `stage` on `data` (a training stage writes the folder `out`); return what the
    stage returns. Its reports go to `report` (default: recorded as the run's metrics), after
    a check for a cancel."""
    sink = metrics_sink(run, heartbeat)

    def on_metrics(values: dict[str, Any]) -> None:
        if report is None:
            sink(values)
        else:
            heartbeat.check()
            report(values)

    if settings.HONE_TRAINING_JOBS == "inline":
        from training.ml.job import stage_run

        return stage_run(stage, config, str(data), str(out), on_metrics=on_metrics)
    return _supervise(run, heartbeat, stage, config, Path(data), Path(out), launch, on_metrics)


def _supervise(
    run: TrainingRun,
    heartbeat: Heartbeat,
    stage: str,
    config: Any,
    data: Path,
    out: Path,
    launch: Launch,
    on_metrics: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    from training.ml.job import JobSpec, launch_command  # no torch: job.py imports it in main

    if launch.accelerate_config is not None and not Path(launch.accelerate_config).is_file():
        raise ValidationError(
            f"The accelerate config file {launch.accelerate_config} (training_config.launch) "
            f"is not on this worker ({WORKER_NAME})."
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    job_dir = Path(tempfile.mkdtemp(prefix=f"job-{stage}-", dir=out.parent))
    events, log_path = job_dir / "events.jsonl", job_dir / "job.log"
    spec_path = job_dir / "spec.json"
    JobSpec(
        stage=stage,
        config=dataclasses.asdict(config),
        data=str(data),
        out=str(out),
        events=str(events),
    ).write(spec_path)
    command = launch_command(
        spec_path, num_processes=launch.processes, config_file=launch.accelerate_config
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HONE_WORKER_PID": str(os.getpid())}
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 (our own command line, no shell)
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=settings.BASE_DIR,
            env=env,
            process_group=0,  # the job and every process it starts: one group to terminate
        )
    services.run_log(
        run=run,
        line=f"{stage} job launched as pid {process.pid} ({launch.described()}): "
        f"{shlex.join(command[1:])}",
    )
    result: dict[str, Any] = {}
    try:
        offset = 0
        while True:
            try:
                status = process.wait(timeout=POLL_SECONDS)
            except subprocess.TimeoutExpired:
                status = None
            offset = _events_read(events, offset, on_metrics, result)
            heartbeat.check()
            if status is not None:
                break
    except BaseException:
        _terminate(process)
        raise
    if "error" in result:
        raise ValueError(result["error"])
    if status != 0 or "result" not in result:
        raise JobFailed(
            f"The {stage} job (pid {process.pid}) {_exit_described(status)} without a result. "
            f"Its last lines:\n{_tail(log_path)}"
        )
    return result["result"]


def _events_read(
    path: Path, offset: int, on_metrics: Callable[[dict[str, Any]], None], result: dict
) -> int:
    """Read the complete lines written since `offset`; return the new offset."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            chunk = f.read()
    except FileNotFoundError:
        return offset
    end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next read
    for line in chunk[:end].splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        if "metrics" in event:
            on_metrics(event["metrics"])
        else:
            result.update(event)
    return offset + end


def _terminate(process: subprocess.Popen) -> None:
    """Stop the job's whole process group: SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # what the launcher may have left behind
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=settings.HONE_JOB_TERMINATE_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _exit_described(status: int | None) -> str:
    if status is not None and status < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-status).name}"
    return f"exited with status {status}"


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no output)"
    # progress bars redraw with carriage returns: keep each line's last state
    kept = [line.rsplit("\r", 1)[-1] for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:]) or "(no output)"
