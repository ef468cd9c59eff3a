"""How a GPU job runs: as a TrainingRun row (running, then succeeded, failed or cancelled), with
a heartbeat thread, metrics, its stage config and its artifacts put in place."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection
from django.utils import timezone

from feedback.models import Project
from training import services
from training.models import (
    DatasetSnapshot,
    DemonstrationSnapshot,
    PolicyVersion,
    RewardModelVersion,
    SFTVersion,
    TrainingRun,
)

logger = logging.getLogger(__name__)


WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"
HEARTBEAT_SECONDS = float(os.environ.get("HONE_HEARTBEAT_SECONDS", "15"))


class RunCancelled(Exception):
    """Someone asked this run to stop."""


class JobFailed(Exception):
    """A job's process ended without a result (training/jobs/child.py): its message says how
    and ends with the job's last log lines."""


class WaitingForHumans(Exception):
    """The human gate waits for labels: the worker is free; a label or the beat goes on."""


# The human gate's comparisons come before other items in annotators' queues: the loop waits.
HUMAN_GATE_PRIORITY = 1.0


def connection_release() -> None:
    """What Django does between two requests, done between the steps of work that lasts
    hours: the connection goes back (to the pool, which checks it before handing it out
    again: CONN_HEALTH_CHECKS), so the next query runs on a live one even if the database
    restarted or the network path dropped this one meanwhile. Inside a transaction the
    caller's connection is left alone."""
    if not connection.in_atomic_block:
        connection.close()


class Heartbeat(threading.Thread):
    """Beats a run's heart while its job works, and notices a request to cancel it.

    A job between two metric steps can be silent for minutes; the beat tells the reaper
    (`runs_reap_stale_task`) that the worker is alive all the same.
    """

    def __init__(self, run_id: int) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{run_id}")
        self.run_id = run_id
        self.stopped = threading.Event()
        self.cancelled = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(HEARTBEAT_SECONDS):
                try:
                    TrainingRun.objects.filter(pk=self.run_id).update(heartbeat_at=timezone.now())
                    if TrainingRun.objects.filter(pk=self.run_id, cancel_requested=True).exists():
                        self.cancelled.set()
                except DatabaseError:  # a busy or lost database: the next beat will do
                    logger.warning("Heartbeat of run %s missed", self.run_id, exc_info=True)
                    connection_release()
        finally:
            connection.close()

    def check(self) -> None:
        if self.cancelled.is_set():
            raise RunCancelled(f"Run {self.run_id} was cancelled.")


def stage_config(cls: type, overrides: dict[str, Any], **values: Any) -> Any:
    """Build a `training.ml` config dataclass from defaults, project overrides and values."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValidationError(
            f"Unknown {cls.__name__} setting(s) in the project's training_config: "
            f"{', '.join(unknown)}. Known: {', '.join(sorted(known))}."
        )
    config = cls(**{**overrides, **values})
    config.validate()
    return config


def stage_overrides(project: Project, stage: str) -> dict[str, Any]:
    value = (project.training_config or {}).get(stage, {})
    if not isinstance(value, dict):
        raise ValidationError(f"training_config.{stage} must be an object.")
    return value


def work_dir(project: Project) -> Path:
    return services.artifact_work_dir(project_id=project.pk)


def run_as(run: TrainingRun, body: Callable[[Heartbeat], dict[str, Any]]) -> dict[str, Any]:
    """Run `body` as `run`: running, then succeeded with its summary, failed or cancelled."""
    run.refresh_from_db()
    if run.cancel_requested:
        services.run_mark_cancelled(run=run)
        raise RunCancelled(f"Run {run.pk} was cancelled before it started.")
    services.run_start(run=run, worker=WORKER_NAME)
    heartbeat = Heartbeat(run.pk)
    heartbeat.start()
    try:
        summary = body(heartbeat)
    except RunCancelled:
        connection_release()
        services.run_mark_cancelled(run=run)
        raise
    except Exception as error:
        connection_release()
        services.run_fail(run=run, error=error_text(error))
        raise
    finally:
        heartbeat.stopped.set()
        heartbeat.join()
    services.run_succeed(run=run, summary=summary)
    return summary


def error_text(error: Exception) -> str:
    if isinstance(error, (ValidationError, ValueError, JobFailed, services.ArtifactStoreError)):
        return f"{type(error).__name__}: {'; '.join(getattr(error, 'messages', [str(error)]))}"
    return "".join(traceback.format_exception(error))[-4000:]


def metrics_sink(run: TrainingRun, heartbeat: Heartbeat) -> Callable[[dict[str, Any]], None]:
    def sink(values: dict[str, Any]) -> None:
        heartbeat.check()
        services.run_record_metrics(run=run, values=values)

    return sink


def artifact_publish(
    tmp_dir: Path, relative: str, register: Callable[[services.StoredArtifact], Any]
) -> Any:
    """Publish a finished artifact (moved into place, or uploaded to the object store), then
    register its row; an upload that fails raises before any row, and if the row cannot be
    written, the artifact goes again: never an adapter without its row, nor a row without
    its adapter."""
    stored = services.artifact_store(source=tmp_dir, key=relative)
    try:
        return register(stored)
    except Exception:
        services.artifact_delete(artifact=stored)
        raise


def adapter_of(policy: PolicyVersion) -> str | None:
    """A local path to the policy's adapter (None for the base model)."""
    if not policy.adapter_path:
        return None
    return str(
        services.artifact_local(
            key=policy.adapter_path, manifest_sha256=policy.adapter_manifest_sha256
        )
    )


def reward_model_of(model: RewardModelVersion) -> str:
    """A local path to the reward model's adapter."""
    return str(
        services.artifact_local(
            key=model.adapter_path, manifest_sha256=model.adapter_manifest_sha256
        )
    )


def snapshot_of(snapshot: DatasetSnapshot) -> str:
    """A local path to the snapshot's JSONL file."""
    return str(services.artifact_local(key=snapshot.path, manifest_sha256=snapshot.manifest_sha256))


def sft_adapter_of(sft: SFTVersion) -> str:
    """A local path to the SFT version's adapter."""
    return str(
        services.artifact_local(key=sft.adapter_path, manifest_sha256=sft.adapter_manifest_sha256)
    )


def reference_adapter_of(sft: SFTVersion | None) -> str | None:
    """What a line is held to and its KL measured from: the adapter of the SFT version at its
    root, or None for the base model (PPO's and DPO's reference, the evaluation's)."""
    return sft_adapter_of(sft) if sft is not None else None


def demonstrations_of(snapshot: DemonstrationSnapshot) -> str:
    """A local path to the demonstration snapshot's JSONL file."""
    return str(services.artifact_local(key=snapshot.path, manifest_sha256=snapshot.manifest_sha256))
