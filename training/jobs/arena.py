"""Arena generation on a GPU worker: both answers at once, streamed to the annotator."""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from django.db import connections

from feedback.models import ArenaBattle
from feedback.services import storable_text
from training.jobs.runner import adapter_of, stage_config, stage_overrides
from training.services.arena import (
    arena_event,
    arena_fail,
    arena_record_answer,
    arena_side_position,
)

STREAM_EVERY_PIECES = 4  # send at most one websocket message per few tokens ...
STREAM_EVERY_SECONDS = 0.25  # ... or per quarter second, whichever comes first


class _Stream:
    """Batches streamed pieces of one side into few websocket messages."""

    def __init__(self, send: Callable[[str], None]) -> None:
        self.send = send
        self.pending: list[str] = []
        self.last = time.monotonic()
        self.lock = threading.Lock()

    def add(self, piece: str) -> None:
        with self.lock:
            self.pending.append(piece)
            if (
                len(self.pending) >= STREAM_EVERY_PIECES
                or time.monotonic() - self.last >= STREAM_EVERY_SECONDS
            ):
                self._flush()

    def flush(self) -> None:
        with self.lock:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.send("".join(self.pending))
            self.pending = []
        self.last = time.monotonic()


# Loading a model patches process-wide state in transformers (weight-init hooks): one load at a
# time; the two decodes then run side by side.
_LOAD_LOCK = threading.Lock()


def arena_generate(*, battle: ArenaBattle) -> None:
    """Generate both answers concurrently (two threads), each streaming as it decodes.

    Each side loads its own policy (base + its adapter, merged), so a worker holds two models
    for the length of a battle; fine for the small models the arena serves here.
    """
    from training.ml.generate import GenerateConfig, sample_with_model
    from training.ml.loading import load_causal_lm, merge_adapter

    project = battle.project
    messages = battle.prompt.messages

    def run_side(side: str) -> None:
        try:
            policy = getattr(battle, f"policy_{side}")
            position = arena_side_position(battle, side)
            config = stage_config(
                GenerateConfig,
                stage_overrides(project, "generate"),
                base_model=project.base_model,
                adapter=adapter_of(policy),
                num_samples=1,
                max_new_tokens=project.max_new_tokens,
                temperature=project.temperature,
                top_p=project.top_p,
                batch_size=1,
                seed=battle.pk * 2 + (side == "b"),  # two independent samples
            )
            with _LOAD_LOCK:
                model, tokenizer = load_causal_lm(
                    config.base_model, adapter=config.adapter, device=config.device
                )
                if config.adapter is not None:
                    model = merge_adapter(model)
            stream = _Stream(
                lambda text: arena_event(
                    battle=battle,
                    event="arena_token",
                    data={"side": position, "text": storable_text(text)},
                )
            )
            (sample,) = sample_with_model(
                model,
                tokenizer,
                [messages],
                num_samples=1,
                max_new_tokens=config.max_new_tokens,
                temperature=config.temperature,
                top_p=config.top_p,
                batch_size=1,
                seed=config.seed,
                on_token=lambda _i, piece: stream.add(piece),
            )
            stream.flush()
            arena_record_answer(
                battle_id=battle.pk,
                side=side,
                text=sample.text,
                token_count=sample.token_count,
                finish_reason=sample.finish_reason,
            )
        finally:
            connections.close_all()  # this thread's own connections (thread-local)

    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            for future in [pool.submit(run_side, side) for side in ("a", "b")]:
                future.result()
    except Exception:
        arena_fail(battle_id=battle.pk, error=traceback.format_exc())
        raise
