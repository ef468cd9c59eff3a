"""One training stage as a process of its own: what a worker launches, with accelerate.

    python -m training.ml.job spec.json                                 # one process
    python -m training.ml.job --processes 8 spec.json                   # 8, through accelerate
    python -m training.ml.job --processes 8 --config-file fsdp.yaml spec.json

The spec is a JSON object: `stage` (reward, sft, dpo, ppo; generate, evaluate), `config` (the
fields of that stage's config dataclass), `data` (the stage's input file), `out` (the folder it
writes, for the training stages) and
`events` (a JSON-lines file). The main process (rank 0) appends one line per metrics report,
`{"metrics": {...}}`, and at the end `{"result": {...}}` (what the stage's train function
returned). Bad input (a spec, config or data file that is wrong) ends with an
`{"error": "..."}` line and exit status 2, whatever the number of processes: each process
that meets it writes the line (they are the same; with several processes the launcher stops
the others as soon as one has failed, so rank 0 alone might not get to write it). The worker
that launched the job reads the file as it grows; stdout and stderr are the job's log.

With `--processes N` (or `--config-file`) this module is the parent of accelerate's launcher
(torchrun underneath), which starts the N processes, each running this module on the spec;
the parent passes SIGTERM and SIGINT on, and turns the launcher's exit status into 2 when the
job ended on bad input. `launch_command` builds the command line. A stage's `batch_size` is the
global batch: N processes share each batch and train as one process does (`training.ml.loading
.check_global_batch`). On a machine without a GPU, `--multi_gpu` starts CPU processes that talk
over gloo: the same code path, which is how the tests check data-parallel training.

No Django here: the worker side is `training/jobs/child.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WORKER_WATCH_SECONDS = 5.0

MetricsFn = Callable[[dict[str, Any]], None]

BAD_INPUT = 2  # the exit status of a job that ended on bad input

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
        if not isinstance(raw, dict):
            raise ValueError(f"the job spec {path} is not a JSON object")
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
    """The stage's config dataclass from the spec's `config`: ValueError naming an unknown
    field, a missing required one or a value of the wrong type."""
    from training.ml.data import config_from_values

    return config_from_values(_named(STAGES[stage][0]), values)


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
    """The command line that runs a job: this module on the spec, with `--processes` (and the
    rest) when accelerate's launcher is to start several processes or read a config file."""
    command = [python, "-m", "training.ml.job"]
    if num_processes != 1 or config_file is not None:
        command += ["--processes", str(num_processes)]
        if config_file is not None:
            command += ["--config-file", config_file]
        if port is not None:
            command += ["--port", str(port)]
    return [*command, str(spec_path)]


def accelerate_command(
    spec_path: str | Path,
    *,
    num_processes: int,
    config_file: str | None = None,
    port: int | None = None,
    python: str = sys.executable,
) -> list[str]:
    """accelerate's launcher starting `num_processes` processes, each running the spec."""
    command = [python, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes)]
    if config_file is not None:
        command += ["--config_file", config_file]
    elif num_processes > 1:
        command += ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no"]
        command += ["--dynamo_backend", "no"]
    command += ["--main_process_port", str(port or free_port())]
    return [*command, "-m", "training.ml.job", str(spec_path)]


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


def ended_on_error(events: str | Path) -> bool:
    """Whether the events file holds an `{"error": ...}` line."""
    try:
        lines = Path(events).read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    return any(line.startswith('{"error":') for line in lines)


def write_event(events: str | Path, kind: str, value: Any) -> None:
    """Append one line to the events file in a single write (lines of several processes do
    not interleave)."""
    line = (json.dumps({kind: value}) + "\n").encode()
    fd = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _events_of(spec_path: str) -> str | None:
    """The events path of a spec that is otherwise wrong, where it names one."""
    try:
        raw = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    events = raw.get("events") if isinstance(raw, dict) else None
    return events if isinstance(events, str) else None


def launch(args: argparse.Namespace) -> int:
    """Run accelerate's launcher as a child; its exit status, or 2 after bad input."""
    try:
        spec = JobSpec.read(args.spec)
    except ValueError as error:
        return _bad_input(error, _events_of(args.spec))
    child = subprocess.Popen(
        accelerate_command(
            args.spec,
            num_processes=args.processes,
            config_file=args.config_file,
            port=args.port,
        )
    )

    def forward(signum: int, _frame: Any) -> None:
        child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    status = child.wait()
    if status != 0 and ended_on_error(spec.events):
        return BAD_INPUT
    return status


def run(spec_path: str) -> int:
    """Run the spec in this process (alone, or as one of the launcher's processes)."""
    try:
        spec = JobSpec.read(spec_path)
    except ValueError as error:
        return _bad_input(error, _events_of(spec_path))
    import torch

    if not torch.cuda.is_available():
        # Processes on CPUs talk over gloo: accelerate does so only when told to use the CPU.
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    main_process = int(os.environ.get("RANK", "0")) == 0  # set by the launcher, per process
    _exit_with_worker(os.environ.get("HONE_WORKER_PID"))

    def on_metrics(metrics: dict[str, Any]) -> None:
        if main_process:
            write_event(spec.events, "metrics", metrics)

    try:
        config = stage_config(spec.stage, spec.config)
        result = stage_run(spec.stage, config, spec.data, spec.out, on_metrics=on_metrics)
    except ValueError as error:  # bad input: one clear line, no traceback
        return _bad_input(error, spec.events)
    if main_process:
        write_event(spec.events, "result", result)
    return 0


def _bad_input(error: ValueError, events: str | None) -> int:
    message = f"{type(error).__name__}: {error}"
    if events is not None:
        with contextlib.suppress(OSError):  # the events path itself is wrong: stderr says it
            write_event(events, "error", message)
    print(f"error: {message}", file=sys.stderr)
    return BAD_INPUT


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m training.ml.job", description="Run one training stage from a job spec."
    )
    parser.add_argument("spec", help="the job spec (JSON)")
    parser.add_argument(
        "--processes", type=int, help="start this many processes with accelerate's launcher"
    )
    parser.add_argument("--config-file", help="accelerate config file (DDP, FSDP, DeepSpeed)")
    parser.add_argument("--port", type=int, help="rendezvous port (default: a free one)")
    args = parser.parse_args(argv)
    if args.processes is not None and args.processes < 1:
        parser.error("--processes must be at least 1")
    if args.processes is not None or args.config_file is not None:
        args.processes = args.processes or 1
        raise SystemExit(launch(args))
    raise SystemExit(run(args.spec))


if __name__ == "__main__":
    main()
