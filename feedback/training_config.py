"""The shape of `Project.training_config` where the project checks it when saved.

The stages' own settings (`training_config.reward`, `.ppo`, ...) are checked against their
config dataclasses when a run starts (training/jobs/runner.py `stage_config`), where the
machine-learning code is; how the stages' jobs are launched (`training_config.launch`) is
checked here too, so that a bad value is refused by the form and the API, naming it.
"""

from __future__ import annotations

import os
from typing import Any

# The stages that run as launched jobs (training/jobs/child.py).
LAUNCH_STAGES = ("sft", "reward", "dpo", "ppo")


def launch_errors(raw: Any) -> list[str]:
    """What is wrong with a `training_config.launch` value (empty: nothing)."""
    if not isinstance(raw, dict):
        return ["training_config.launch must be an object."]
    errors = []
    for key, value in raw.items():
        name = f"training_config.launch.{key}"
        if key in LAUNCH_STAGES:
            if not isinstance(value, dict):
                errors.append(f"{name} must be an object.")
                continue
            errors += [
                e for k, v in value.items() for e in _launch_value_errors(f"{name}.{k}", k, v)
            ]
        else:
            errors += _launch_value_errors(name, key, value)
    return errors


def _launch_value_errors(name: str, key: str, value: Any) -> list[str]:
    if key == "processes":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
            return [f"{name} must be a whole number of processes from 1 to 1024, got {value!r}."]
        return []
    if key == "accelerate_config":
        if value is not None and (not isinstance(value, str) or not os.path.isabs(value)):
            return [f"{name} must be the absolute path of an accelerate config file, or null."]
        return []
    known = ", ".join(["processes", "accelerate_config", *LAUNCH_STAGES])
    return [f"{name} is not a launch setting; known: {known}."]
