"""One training stage as a process of its own: what a worker launches, with accelerate.

    accelerate launch --multi_gpu --num_processes 8 -m training.ml.job spec.json
    python -m training.ml.job spec.json                 # one process

The spec is a JSON object: `stage` (reward, sft, dpo, ppo; generate, evaluate), `config` (the
fields of that stage's config dataclass), `data` (the stage's input file), `out` (the folder it
writes, for the training stages) and
`events` (a JSON-lines file). The main process (rank 0) appends one line per metrics report,
`{"metrics": {...}}`, and at the end `{"result": {...}}` (what the stage's train function
returned); bad input ends with `{"error": "..."}` and exit status 2. The worker that launched
the job reads the file as it grows; stdout and stderr are the job's log.

`launch_command` builds the command line: accelerate's launcher (torchrun underneath) with a
number of processes and, optionally, an accelerate config file (DDP, FSDP, DeepSpeed). On a
machine without a GPU, `--multi_gpu` starts CPU processes that talk over gloo: the same code
path, which is how the tests check data-parallel training.

No Django here: the worker side is `training/jobs/child.py`.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WORKER_WATCH_SECONDS = 5.0

MetricsFn = Callable[[dict[str, Any]], None]

# stage -> (its config class, its function), as "module:name"; every function is
# `run(config, data, out, *, on_metrics=None) -> dict`.
STAGES: dict[str, tuple[str, str]] = {
    "reward": ("training.ml.reward:RewardTrainConfig", "training.ml.reward:train_reward"),
    "sft": ("training.ml.sft:SFTTrainConfig", "training.ml.sft:train_sft"),
    "dpo": ("training.ml.dpo:DPOTrainConfig", "training.ml.dpo:train_dpo"),
    "ppo": ("training.ml.ppo:PPOConfig", "training.ml.ppo:train_ppo"),
    # one process each: sampling answers, and a candidate judged against the incumbent
    "generate": ("training.ml.generate:GenerateConfig", "training.ml.job:generate_stage"),
    "evaluate": ("training.ml.evaluate:EvaluateConfig", "training.ml.job:evaluate_stage"),
}


@dataclass(frozen=True)
class JobSpec:
    stage: str
    config: dict[str, Any]
    data: str
    out: str
    events: str

    @classmethod
    def read(cls, path: str | Path) -> JobSpec:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read the job spec {path}: {error}") from None
        missing = [k for k in ("stage", "config", "data", "out", "events") if k not in raw]
        if missing:
            raise ValueError(f"the job spec {path} lacks {', '.join(missing)}")
        if raw["stage"] not in STAGES:
            raise ValueError(
                f"unknown stage {raw['stage']!r} in {path}; known: {', '.join(STAGES)}"
            )
        return cls(**{k: raw[k] for k in ("stage", "config", "data", "out", "events")})

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.__dict__, indent=2) + "\n", encoding="utf-8")


def stage_run(
    stage: str, config: Any, data: str, out: str, *, on_metrics: MetricsFn | None = None
) -> dict[str, Any]:
    """Run one stage here, in this process (or in each process of a launched job)."""
    run = _named(STAGES[stage][1])
    return run(config, data, out, on_metrics=on_metrics)


def generate_stage(
    config: Any, data: str, out: str, *, on_metrics: MetricsFn | None = None
) -> dict[str, Any]:
    """`generate` on the prompts file `data`: {"samples": one list of samples per prompt};
    reports {"done", "total"} answers. `out` is unused (the answers are the result)."""
    from training.ml.data import load_prompts
    from training.ml.generate import generate

    samples = generate(config, load_prompts(data), on_progress=_progress(on_metrics))
    return {"samples": [[dataclasses.asdict(s) for s in one] for one in samples]}


def evaluate_stage(
    config: Any, data: str, out: str, *, on_metrics: MetricsFn | None = None
) -> dict[str, Any]:
    """`evaluate` on the prompts file `data`: its report; reports {"done", "total"} units."""
    from training.ml.evaluate import evaluate

    return evaluate(config, data, on_progress=_progress(on_metrics))


def _progress(on_metrics: MetricsFn | None) -> Callable[[int, int], None] | None:
    if on_metrics is None:
        return None
    return lambda done, total: on_metrics({"done": done, "total": total})


def stage_config(stage: str, values: dict[str, Any]) -> Any:
    return _named(STAGES[stage][0])(**values)


def _named(path: str) -> Any:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def launch_command(
    spec_path: str | Path,
    *,
    num_processes: int = 1,
    config_file: str | None = None,
    port: int | None = None,
    python: str = sys.executable,
) -> list[str]:
    """The command line that runs a job: plain Python for one process without a config file,
    accelerate's launcher otherwise (each process gets the spec; rank 0 writes events)."""
    job = ["-m", "training.ml.job", str(spec_path)]
    if num_processes == 1 and config_file is None:
        return [python, *job]
    command = [python, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes)]
    if config_file is not None:
        command += ["--config_file", config_file]
    elif num_processes > 1:
        command += ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no"]
        command += ["--dynamo_backend", "no"]
    command += ["--main_process_port", str(port or free_port())]
    return [*command, *job]


def free_port() -> int:
    """A TCP port free on this machine now (for the processes' rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _exit_with_worker(pid: str | None) -> None:
    """A job launched by a worker ends when that worker is gone (killed, out of memory):
    nobody would read its result, and its GPUs are wanted elsewhere."""
    if not pid:
        return

    def watch() -> None:
        while True:
            time.sleep(WORKER_WATCH_SECONDS)
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                print(f"error: the worker (pid {pid}) is gone; the job stops", file=sys.stderr)
                os._exit(3)
            except PermissionError:  # alive, another user's: not ours to judge
                pass

    threading.Thread(target=watch, daemon=True, name="worker-watch").start()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m training.ml.job SPEC.json", file=sys.stderr)
        raise SystemExit(2)
    try:
        spec = JobSpec.read(args[0])
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    import torch

    if not torch.cuda.is_available():
        # Processes on CPUs talk over gloo: accelerate does so only when told to use the CPU.
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    main_process = int(os.environ.get("RANK", "0")) == 0  # set by the launcher, per process
    _exit_with_worker(os.environ.get("HONE_WORKER_PID"))
    events = None
    try:
        events = open(spec.events, "a", encoding="utf-8") if main_process else None  # noqa: SIM115

        def emit(kind: str, value: Any) -> None:
            if events is not None:
                events.write(json.dumps({kind: value}) + "\n")
                events.flush()

        try:
            config = stage_config(spec.stage, spec.config)
            result = stage_run(
                spec.stage,
                config,
                spec.data,
                spec.out,
                on_metrics=lambda metrics: emit("metrics", metrics),
            )
        except ValueError as error:  # bad input: one clear line, no traceback
            emit("error", f"{type(error).__name__}: {error}")
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        emit("result", result)
    finally:
        if events is not None:
            events.close()


if __name__ == "__main__":
    main()
